# haproxy-k8s as a Nix package: `pkgs.callPackage ./nix/package.nix { }` (the flake and the
# overlay do this). Built from pyproject.toml with hatchling; HAProxy is put on the wrapper's
# PATH, so the daemon's default `haproxy.binary = "haproxy"` finds it.
{ lib, python3Packages, haproxy }:

let
  pyproject = lib.importTOML ../pyproject.toml;
in
python3Packages.buildPythonApplication {
  pname = "haproxy-k8s";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the wheel needs: a change to tests or docs does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md # pyproject's `readme`
      ../haproxy_k8s
      ../templates
    ];
  };

  build-system = [ python3Packages.hatchling ];

  # pyproject.toml's [project] dependencies (tests/test_nix.py keeps the two lists equal).
  dependencies = with python3Packages; [
    jinja2
    psutil
    watchdog
    requests
    prometheus-client
    # Kubernetes discovery (sources/kubeclient.py): kubeconfig handling and the HTTP
    # client it returns. Where a nixpkgs lacks httpx2, overlay it from PyPI.
    lightkube
    httpx2
    # The compiled TOML parser (nixpkgs' tomli may be the pure one: still correct).
    tomli
  ];
  # The `demo` extra (stand-in apiservers with their own certificates); a router does not
  # need it, and it keeps cryptography off the closure.
  optional-dependencies.demo = with python3Packages; [ cryptography ];

  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ haproxy ]) ];

  # The test suite runs real HAProxy against stand-in apiservers on 127.0.8.x: CI runs it,
  # the sandbox cannot. An import check still catches a broken wheel.
  doCheck = false;
  pythonImportsCheck = [ "haproxy_k8s" "haproxy_k8s.cli" ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.asl20;
    mainProgram = "haproxy-k8s";
    platforms = lib.platforms.linux;
  };
}
