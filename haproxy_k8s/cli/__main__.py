"""`python -m haproxy_k8s.cli …`: the same as the `haproxy-k8s` console script."""

import sys

from . import main

sys.exit(main())
