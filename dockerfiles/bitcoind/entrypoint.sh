#!/bin/sh
# Starts bitcoind for the network in $NETWORK with the RPC credentials in
# $RPC_USER and $RPC_PASSWORD (or the file $RPC_PASSWORD_FILE), RPC on every
# address (the health gates call it), chain under /data. With arguments of
# its own (the chart passes them) the command runs as given.
set -eu
if [ -z "${RPC_PASSWORD:-}" ] && [ -n "${RPC_PASSWORD_FILE:-}" ]; then
  RPC_PASSWORD=$(cat "$RPC_PASSWORD_FILE")
fi
if [ "$#" -eq 1 ] && [ "$1" = bitcoind ]; then
  case "${NETWORK:-mainnet}" in
    mainnet) net="" rpc=8332 ;;
    testnet3 | testnet) net=-testnet rpc=18332 ;;
    testnet4) net=-testnet4 rpc=48332 ;;
    signet) net=-signet rpc=38332 ;;
    regtest) net=-regtest rpc=18443 ;;
    *) echo "bitcoind does not run network ${NETWORK}" >&2; exit 2 ;;
  esac
  : "${RPC_USER:?set RPC_USER}" "${RPC_PASSWORD:?set RPC_PASSWORD or RPC_PASSWORD_FILE}"
  # shellcheck disable=SC2086 # $net is one flag or none
  exec bitcoind -datadir=/data -printtoconsole -server=1 \
    -rpcbind=0.0.0.0 -rpcallowip=0.0.0.0/0 -rpcport="${RPC_PORT:-$rpc}" \
    -rpcuser="$RPC_USER" -rpcpassword="$RPC_PASSWORD" $net
fi
exec "$@"
