#!/bin/sh
# Starts bitcoind for the network in $NETWORK, chain under /data, RPC on
# every address of the container (the health gates call it; the Docker
# target publishes it on 127.0.0.1 only, the chart narrows it with
# $RPC_ALLOW_IP and NetworkPolicies). The RPC credentials are in the config
# file hab mounts read-only, mode 0400: $HAB_NODE_FILES/bitcoin.conf
# (default /run/hab), never on the command line or in the environment, where
# every process on the host could read them. The log goes to the console
# only. With arguments of its own (the chart passes them) the command runs
# as given.
set -eu
files=${HAB_NODE_FILES:-/run/hab}
if [ "$#" -eq 1 ] && [ "$1" = bitcoind ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net="" rpc=8332 ;;
    testnet3 | testnet) net=-testnet rpc=18332 ;;
    testnet4) net=-testnet4 rpc=48332 ;;
    signet) net=-signet rpc=38332 ;;
    regtest) net=-regtest rpc=18443 ;;
    *) echo "bitcoind does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  [ -r "$files/bitcoin.conf" ] ||
    { echo "no $files/bitcoin.conf: hab mounts the node's RPC credentials there" >&2; exit 2; }
  # shellcheck disable=SC2086 # $net is one flag or none
  exec bitcoind -datadir=/data -conf="$files/bitcoin.conf" -printtoconsole=1 -nodebuglogfile \
    -server=1 -rpcbind=0.0.0.0 -rpcallowip="${RPC_ALLOW_IP:-0.0.0.0/0}" \
    -rpcport="${RPC_PORT:-$rpc}" $net
fi
exec "$@"
