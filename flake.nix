{
  description = "haproxy-k8s: HAProxy in front of kube-apiservers, configured by drop-ins";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # `imports = [ inputs.haproxy-k8s.nixosModules.default ];` is the whole install: the
      # module's `package` defaults to pkgs.haproxy-k8s (this overlay) or else builds
      # nix/package.nix from this flake's source with the system's own nixpkgs.
      nixosModules.default = ./nix/module.nix;
      nixosModules.haproxy-k8s = self.nixosModules.default;

      overlays.default = final: _prev: {
        haproxy-k8s = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (pkgs: rec {
        haproxy-k8s = pkgs.callPackage ./nix/package.nix { };
        default = haproxy-k8s;
      });

      checks = forAllSystems (pkgs: { package = self.packages.${pkgs.system}.default; });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
