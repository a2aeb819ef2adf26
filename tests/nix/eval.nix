# Evaluates nix/module.nix with nixpkgs' lib.evalModules, as NixOS would, with only `lib`:
# the few NixOS options the module sets are declared here as stubs, and `pkgs` throws if
# anything forces it (the package is a stand-in derivation).
#
#   nix-instantiate --eval --strict --json tests/nix/eval.nix \
#     --argstr nixpkgsLib "$NIXPKGS_LIB" --argstr configuration /path/to/block.nix
{ nixpkgsLib, configuration, module ? ../../nix/module.nix }:
let
  lib = import nixpkgsLib;

  anyAttrs = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
  nixosStubs = {
    options = {
      assertions = lib.mkOption { type = lib.types.listOf lib.types.anything; default = [ ]; };
      environment.etc = anyAttrs;
      environment.systemPackages =
        lib.mkOption { type = lib.types.listOf lib.types.package; default = [ ]; };
      networking.firewall.allowedTCPPorts =
        lib.mkOption { type = lib.types.listOf lib.types.port; default = [ ]; };
      systemd.services = anyAttrs;
      users.users = anyAttrs;
      users.groups = anyAttrs;
    };
  };

  standInPackage = {
    type = "derivation";
    name = "haproxy-k8s-0.1.0";
    outPath = "/nix/store/00000000000000000000000000000000-haproxy-k8s-0.1.0";
  };
  environment = {
    _module.args.pkgs = throw "tests/nix/eval.nix: the module forced `pkgs`; only `package` may use it";
    services.haproxy-k8s.package = lib.mkDefault standInPackage;
  };

  evaluated = lib.evalModules {
    modules = [ nixosStubs environment module (/. + configuration) ];
  };
  c = evaluated.config;
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  etc = lib.mapAttrs (_: file: file.text) c.environment.etc;
  systemPackages = map (p: p.name) c.environment.systemPackages;
  allowedTCPPorts = c.networking.firewall.allowedTCPPorts;
  services = c.systemd.services;
  users = c.users.users;
  groups = c.users.groups;
}
