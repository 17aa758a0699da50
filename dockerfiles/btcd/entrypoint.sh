#!/bin/sh
# Starts btcd for the network in $NETWORK (ports from btcd's chaincfg
# params), chain under /data, RPC over TLS on every address of the container
# (the health gates call it). Its RPC credentials are in the config file hab
# mounts read-only, mode 0400: $HAB_NODE_FILES/btcd.conf (default
# /run/hab), never on the command line or in the environment; its RPC
# certificate and key are rpc.cert and rpc.key beside it, signed by the CA
# the gates pin. With arguments of its own (the chart passes them) the
# command runs as given.
set -eu
files=${HAB_NODE_FILES:-/run/hab}
if [ "$#" -eq 1 ] && [ "$1" = btcd ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net="" rpc=8334 ;;
    testnet3 | testnet) net=--testnet rpc=18334 ;;
    testnet4) net=--testnet4 rpc=48334 ;;
    signet) net=--signet rpc=38332 ;;
    regtest) net=--regtest rpc=18334 ;;
    simnet) net=--simnet rpc=18556 ;;
    *) echo "btcd does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  for f in btcd.conf rpc.cert rpc.key; do
    [ -r "$files/$f" ] ||
      { echo "no $files/$f: hab mounts the node's RPC credentials and certificate there" >&2; exit 2; }
  done
  # shellcheck disable=SC2086 # $net is one flag or none
  exec btcd --configfile="$files/btcd.conf" --datadir=/data/data --logdir=/data/logs \
    --rpclisten="0.0.0.0:${RPC_PORT:-$rpc}" \
    --rpccert="$files/rpc.cert" --rpckey="$files/rpc.key" $net
fi
exec "$@"
