#!/bin/sh
# The entrypoint of habd's image. Arguments go to habd (the chart passes
# `serve --config /etc/hab/hab.toml`); a first argument that names one of
# the image's programs runs it as given instead:
#
#   docker run IMAGE serve --config /etc/hab/hab.toml   # habd serve ...
#   docker run IMAGE habd --version                     # habd --version
#   docker run IMAGE habctl --server http://habd:8470 status
set -eu
case "${1:-}" in
  habd | habctl) exec "$@" ;;
esac
exec habd "$@"
