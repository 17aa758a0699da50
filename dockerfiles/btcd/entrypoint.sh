#!/bin/sh
# Starts btcd for the network in $NETWORK with the RPC credentials in
# $RPC_USER and $RPC_PASSWORD (or the file $RPC_PASSWORD_FILE), RPC on every
# address (the health gates call it), chain under /data. With arguments of
# its own (the chart passes them) the command runs as given.
set -eu
if [ -z "${RPC_PASSWORD:-}" ] && [ -n "${RPC_PASSWORD_FILE:-}" ]; then
  RPC_PASSWORD=$(cat "$RPC_PASSWORD_FILE")
fi
if [ "$#" -eq 1 ] && [ "$1" = btcd ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net="" rpc=8334 ;;
    testnet3 | testnet) net=--testnet rpc=18334 ;;
    signet) net=--signet rpc=38332 ;;
    regtest) net=--regtest rpc=18334 ;;
    simnet) net=--simnet rpc=18556 ;;
    *) echo "btcd does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  : "${RPC_USER:?set RPC_USER}" "${RPC_PASSWORD:?set RPC_PASSWORD or RPC_PASSWORD_FILE}"
  # shellcheck disable=SC2086 # $net is one flag or none
  exec btcd --datadir=/data/data --logdir=/data/logs \
    --rpclisten="0.0.0.0:${RPC_PORT:-$rpc}" --rpcuser="$RPC_USER" --rpcpass="$RPC_PASSWORD" \
    --rpccert=/data/rpc.cert --rpckey=/data/rpc.key $net
fi
exec "$@"
