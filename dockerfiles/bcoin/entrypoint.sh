#!/bin/sh
# Starts bcoin for the network in $NETWORK; its HTTP/JSON-RPC API on every
# address (the health gates call it) with the API key $RPC_PASSWORD (or the
# file $RPC_PASSWORD_FILE); chain under /data. With arguments of its own
# (the chart passes them) the command runs as given.
set -eu
if [ -z "${RPC_PASSWORD:-}" ] && [ -n "${RPC_PASSWORD_FILE:-}" ]; then
  RPC_PASSWORD=$(cat "$RPC_PASSWORD_FILE")
fi
if [ "$#" -eq 1 ] && [ "$1" = bcoin ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net=main rpc=8332 ;;
    testnet3 | testnet) net=testnet rpc=18332 ;;
    regtest) net=regtest rpc=48332 ;;
    simnet) net=simnet rpc=18556 ;;
    *) echo "bcoin does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  : "${RPC_PASSWORD:?set RPC_PASSWORD or RPC_PASSWORD_FILE}"
  exec bcoin --prefix=/data --network="$net" --http-host=0.0.0.0 \
    --http-port="${RPC_PORT:-$rpc}" --api-key="$RPC_PASSWORD"
fi
exec "$@"
