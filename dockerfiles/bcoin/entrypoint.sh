#!/bin/sh
# Starts bcoin for the network in $NETWORK, chain under /data, its
# HTTP/JSON-RPC API on every address of the container (the health gates
# call it). Its API key is in the config file hab mounts read-only, mode
# 0400: $HAB_NODE_FILES/bcoin.conf (default /run/hab), never on the command
# line or in the environment. The log goes to the console only. With
# arguments of its own (the chart passes them) the command runs as given.
set -eu
files=${HAB_NODE_FILES:-/run/hab}
if [ "$#" -eq 1 ] && [ "$1" = bcoin ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net=main rpc=8332 ;;
    testnet3 | testnet) net=testnet rpc=18332 ;;
    regtest) net=regtest rpc=48332 ;;
    simnet) net=simnet rpc=18556 ;;
    *) echo "bcoin does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  [ -r "$files/bcoin.conf" ] ||
    { echo "no $files/bcoin.conf: hab mounts the node's API key there" >&2; exit 2; }
  exec bcoin --config="$files/bcoin.conf" --prefix=/data --network="$net" \
    --http-host=0.0.0.0 --http-port="${RPC_PORT:-$rpc}" \
    --log-console=true --log-file=false
fi
exec "$@"
