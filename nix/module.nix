# NixOS module for haproxy-k8s. docs/nixos.md explains every option and the choices below.
#
# The first five options are those of the `services.haproxy-k8s` block the origin router
# already has, unchanged (enable, frontendPort, bindAddress, controlPlaneNodes, statsPort);
# openFirewall, package, clusterName, clusters and settings are what haproxy-k8s adds.
# Everything becomes one JSON drop-in, /etc/haproxy-k8s/conf.d/10-nixos.json, in the same
# schema as the TOML files (docs/configuration.md); hand-written drop-ins beside it still
# count. Apart from `package`, evaluating this module needs nothing but nixpkgs `lib`.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;

  cfg = config.services.haproxy-k8s;
  opt = "services.haproxy-k8s";

  configDir = "/etc/haproxy-k8s";
  dropIn = "haproxy-k8s/conf.d/10-nixos.json";

  # What the schema accepts (haproxy_k8s/schema.py), checked here so that a mistake fails
  # at evaluation, naming the option, instead of at `haproxy-k8s check` time.
  label = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
  clusterNameType = types.strMatching label // {
    description = "cluster name (a DNS label: lowercase letters, digits and '-', 1-63 characters)";
  };
  nodeNameType = types.strMatching "${label}(\\.${label})*" // {
    description = "node name (DNS labels, separated by dots)";
  };
  portType = types.ints.between 1 65535 // { description = "TCP port (1-65535)"; };
  ipv4 = "([0-9]{1,3}\\.){3}[0-9]{1,3}";
  ipv6 = "[0-9a-fA-F]*:[0-9a-fA-F:.]*";
  ipLiteralType = types.strMatching "${ipv4}|${ipv6}" // {
    description = "IPv4 or IPv6 address literal";
  };

  # Any JSON value, as pkgs.formats.json has it (without needing pkgs).
  jsonValue = types.nullOr (types.oneOf [
    types.bool types.int types.float types.str
    (types.attrsOf jsonValue) (types.listOf jsonValue)
  ]) // { description = "JSON value"; };

  nodeModule = types.submodule {
    options = {
      name = mkOption {
        type = nodeNameType;
        example = "k8s-master-1";
        description = "Node name: the `server` name in HAProxy and in `haproxy-k8s status`.";
      };
      address = mkOption {
        type = types.nonEmptyStr;
        example = "192.168.8.10";
        description = "The apiserver's IP address or DNS name.";
      };
      port = mkOption {
        type = portType;
        default = 6443;
        description = "The apiserver's port.";
      };
    };
  };

  # A cluster of `clusters`: the TOML schema's [clusters.NAME] table. `bind` and the nodes'
  # `address` are typed; any other schema key is passed through (the daemon checks it).
  clusterNodeModule = types.submodule {
    freeformType = types.attrsOf jsonValue;
    options = {
      address = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = null;
        description = "IP address or DNS name (not needed with `enabled = false`).";
      };
      port = mkOption {
        type = types.nullOr portType;
        default = null;
        description = "The apiserver's port (null: 6443).";
      };
    };
  };
  clusterModule = types.submodule {
    freeformType = types.attrsOf jsonValue;
    options = {
      bind = mkOption {
        type = types.nullOr (types.either types.nonEmptyStr (types.nonEmptyListOf types.nonEmptyStr));
        default = null;
        example = [ "192.168.8.1:7443" ];
        description = "`address:port` (`[v6]:port` for IPv6) or a list of them.";
      };
      nodes = mkOption {
        type = types.attrsOf clusterNodeModule;
        default = { };
        description = "The control-plane nodes, by name.";
      };
    };
  };

  withoutNulls = lib.filterAttrs (_: value: value != null);

  duplicates = names: lib.unique (lib.filter (n: lib.count (m: m == n) names > 1) names);

  nodesChecked =
    let dup = duplicates (map (node: node.name) cfg.controlPlaneNodes);
    in if dup != [ ] then
      throw "${opt}.controlPlaneNodes: node names must be unique; defined more than once: ${lib.concatStringsSep ", " dup}"
    else cfg.controlPlaneNodes;

  hostPort = address: port:
    if lib.hasInfix ":" address then "[${address}]:${toString port}" else "${address}:${toString port}";
  isIPv6 = lib.hasInfix ":" cfg.bindAddress;
  lanPrefix24 = address:
    lib.concatStringsSep "." (lib.take 3 (lib.splitString "." address)) + ".0/24";

  # The origin's block as a cluster.
  originCluster = lib.optionalAttrs (cfg.controlPlaneNodes != [ ]) {
    ${cfg.clusterName} = {
      bind = [ (hostPort cfg.bindAddress cfg.frontendPort) ];
      nodes = lib.listToAttrs (map (node: {
        inherit (node) name;
        value = { inherit (node) address port; };
      }) nodesChecked);
    };
  };

  extraClusters = lib.mapAttrs (name: cluster:
    if builtins.match label name == null then
      throw "${opt}.clusters.${name}: invalid cluster name (${clusterNameType.description})"
    else withoutNulls (cluster // { nodes = lib.mapAttrs (_: withoutNulls) cluster.nodes; }))
    cfg.clusters;

  base = {
    # The origin's checks and limits: TCP connect checks, timeout connect 10s, retries 3.
    # haproxy-k8s's own default is an HTTPS GET /readyz check; switch with
    # settings.defaults.check = "https" once /readyz is reachable (docs/nixos.md).
    defaults = {
      check = "tcp";
      connect_timeout = "10s";
      retries = 3;
    };
    stats = {
      bind = hostPort cfg.bindAddress cfg.statsPort;
      # The origin served its stats page to its LAN: loopback plus the /24 (IPv4) or /64
      # (IPv6) around bindAddress. Override with settings.stats.allow.
      # A wildcard bindAddress has no LAN to go by: loopback only.
      allow =
        if lib.elem cfg.bindAddress [ "0.0.0.0" "::" ] then [ "127.0.0.0/8" "::1/128" ]
        else if isIPv6 then [ "::1/128" "${cfg.bindAddress}/64" ]
        else [ "127.0.0.0/8" "${lanPrefix24 cfg.bindAddress}" ];
    };
    clusters = lib.recursiveUpdate originCluster extraClusters;
  };

  document =
    let merged = lib.recursiveUpdate base cfg.settings;
    in if (merged.clusters or { }) == { } then
      throw "${opt}: no cluster: set ${opt}.controlPlaneNodes (or ${opt}.clusters)"
    else merged;

  dropInText = builtins.toJSON document;

  bindPort = bind: lib.toInt (lib.last (lib.splitString ":" bind));
  asList = value: if builtins.isList value then value else [ value ];
  # Every port the drop-in listens on for clients and the stats page (not metrics.bind: the
  # daemon's own metrics stay local unless opened by hand).
  firewallPorts = lib.unique (lib.sort lib.lessThan (
    lib.concatMap (cluster: map bindPort (asList (cluster.bind or [ ])))
      (lib.attrValues document.clusters)
    ++ lib.optional ((document.stats.bind or "") != "") (bindPort document.stats.bind)));

  # Keys the daemon reads only at start (docs/configuration.md): a change restarts it.
  # Nothing about clusters or nodes is here, so a node change never restarts HAProxy.
  restartOnly = builtins.toJSON {
    binary = document.haproxy.binary or null;
    state_dir = document.haproxy.state_dir or null;
  };
in
{
  options.services.haproxy-k8s = {
    enable = lib.mkEnableOption "haproxy-k8s, HAProxy in front of kube-apiservers";

    frontendPort = mkOption {
      type = portType;
      default = 6443;
      description = "Port the apiserver endpoint listens on (at bindAddress).";
    };

    bindAddress = mkOption {
      type = ipLiteralType;
      example = "192.168.8.1";
      description = "Address the apiserver endpoint and the stats page listen on.";
    };

    controlPlaneNodes = mkOption {
      type = types.listOf nodeModule;
      default = [ ];
      example = lib.literalExpression ''
        [ { name = "k8s-master-1"; address = "192.168.8.10"; port = 6443; } ]
      '';
      description = ''
        The control-plane nodes behind bindAddress:frontendPort: the cluster `clusterName`.
        Names must be unique.
      '';
    };

    statsPort = mkOption {
      type = portType;
      default = 8404;
      description = "Port of HAProxy's stats page (`http://bindAddress:statsPort/stats`).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Open the TCP ports of every cluster bind and of the stats page in
        networking.firewall (frontendPort and statsPort for the origin block).
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.haproxy-k8s or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.haproxy-k8s or (pkgs.callPackage ./nix/package.nix { })";
      description = "The haproxy-k8s package (its wrapper has HAProxy on PATH).";
    };

    clusterName = mkOption {
      type = clusterNameType;
      default = "cluster-0";
      description = "Name of the cluster made of controlPlaneNodes.";
    };

    clusters = mkOption {
      type = types.attrsOf clusterModule;
      default = { };
      example = lib.literalExpression ''
        {
          cluster-1 = {
            bind = [ "192.168.8.1:7443" ];
            check = "https";
            nodes.k8s-1-master-1.address = "192.168.9.10";
          };
        }
      '';
      description = ''
        More clusters, as in the TOML schema's `[clusters.NAME]` tables (any key of
        docs/configuration.md). A cluster named like clusterName adds to or overrides it.
      '';
    };

    settings = mkOption {
      type = types.submodule { freeformType = types.attrsOf jsonValue; };
      default = { };
      example = lib.literalExpression ''
        {
          defaults.check = "https";
          stats.allow = [ "127.0.0.0/8" "192.168.8.0/24" ];
          metrics.bind = "127.0.0.1:9404";
        }
      '';
      description = ''
        Any key of the TOML schema (docs/configuration.md), merged over what the options
        above produce: checks, timeouts, stats, metrics, watch, haproxy.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = !(config.services.haproxy.enable or false);
      message = "${opt} and services.haproxy both run HAProxy on the same ports: disable services.haproxy.";
    }];

    environment.etc.${dropIn}.text = dropInText;
    # `haproxy-k8s status`, `check`, `drain` … on the command line.
    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall firewallPorts;

    # The same definition as nixpkgs' services.haproxy, so the two never conflict.
    users.users.haproxy = {
      isSystemUser = true;
      group = "haproxy";
    };
    users.groups.haproxy = { };

    # units/haproxy-k8s.service, the NixOS way (its comments explain each line).
    systemd.services.haproxy-k8s = {
      description = "HAProxy load balancer for kube-apiservers (haproxy-k8s)";
      documentation = [ "man:haproxy(1)" ];
      conflicts = [ "haproxy.service" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];

      # `nixos-rebuild switch` and a changed drop-in: only X-Reload-Triggers differs, so the
      # unit is reloaded (the daemon re-reads the directory: a node change goes through the
      # runtime API, anything else through a seamless reload) and HAProxy keeps running.
      # The hash keeps the unit file short; it changes exactly when the drop-in does.
      reloadTriggers = [ (builtins.hashString "sha256" dropInText) ];
      # Only keys that need a daemon restart; never the clusters or nodes.
      restartTriggers = [ restartOnly ];
      # A changed unit (a new package) restarts the daemon; reloadIfChanged would keep the
      # old daemon running on a store path that may be garbage-collected.
      reloadIfChanged = false;
      # Restart after the switch instead of stopping before it: a shorter gap.
      stopIfChanged = false;

      serviceConfig = {
        Type = "notify";
        ExecStart = "${cfg.package}/bin/haproxy-k8s run --config-dir ${configDir}";
        # Waits for the apply and fails (so does the switch) if the daemon refused the
        # new drop-in; HAProxy keeps serving the last good config either way.
        ExecReload = "${cfg.package}/bin/haproxy-k8s reload --config-dir ${configDir}";
        WatchdogSec = "30s";
        Restart = "on-failure";
        RestartSec = "2s";
        # 78 (EX_CONFIG): a state dir the sandbox cannot write; restarting cannot fix it.
        RestartPreventExitStatus = "78";
        KillMode = "process";

        RuntimeDirectory = "haproxy-k8s";
        RuntimeDirectoryPreserve = "yes";
        RuntimeDirectoryMode = "0750";
        StateDirectory = "haproxy-k8s";
        StateDirectoryMode = "0750";
        ConfigurationDirectory = "haproxy-k8s";
        UMask = "0027";

        User = "haproxy";
        Group = "haproxy";
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        RemoveIPC = true;
        LimitNOFILE = "1024:524288";

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        # [vip] only: the daemon holds keepalived's tracked tun link open (docs/ha-pair.md).
        BindPaths = "-/dev/net/tun";
        DeviceAllow = "/dev/net/tun rw";
        PrivateMounts = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
