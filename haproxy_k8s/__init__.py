"""haproxy-k8s: a declarative HAProxy manager for kube-apiserver load balancers."""

__version__ = "0.1.0"
