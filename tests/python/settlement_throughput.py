"""Settlement throughput of a `rempart demo` node (a measurement, not a test).

Starts the given rempart binary as a demo node in a temporary directory, then ROUNDS times:
rests K one-lot sells of alice on CITY/EUR, sends one buy of bob that sweeps them (K trades in
one command, acknowledged once durable), and waits until the node's Prometheus metrics show
them settled on its ledger (`rempart_settlement_lag_seq` 0 and 2 K more settled transfers).
Prints one line per round and a summary with trades settled per second after the
acknowledgement. Usage: settlement_throughput.py BINARY [K] [ROUNDS] [VALIDATORS]

With VALIDATORS (e.g. 4), the node settles on a local consortium instead of its own ledger:
`rempart ledger testnet` writes the consortium (its genesis listing the node's gate key, from
`rempart demo --print-gate-key`), VALIDATORS `rempart validator` processes run it, and the demo
node is started with --consortium-genesis and --consortium-validators.
"""

import glob
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request


def main() -> int:
    binary = sys.argv[1]
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    validators = int(sys.argv[4]) if len(sys.argv) > 4 else 0

    import grpc
    import grpc_tools
    from grpc_tools import protoc

    proto = os.path.join(os.path.dirname(__file__), "..", "..", "proto")
    out = tempfile.mkdtemp(prefix="rempart-py-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(glob.glob(os.path.join(proto, "rempart", "v1", "*.proto")))
    if protoc.main(["protoc", f"-I{proto}", f"-I{well_known}", f"--python_out={out}",
                    f"--grpc_python_out={out}"] + files) != 0:
        return 1
    sys.path.insert(0, out)
    from rempart.v1 import trading_pb2, trading_pb2_grpc

    data = tempfile.mkdtemp(prefix="rempart-settle-")
    extra, children = [], []
    if validators:
        import json
        key = subprocess.run([binary, "demo", "--print-gate-key", "--data-dir", data],
                             check=True, capture_output=True, text=True).stdout.strip()
        net_dir = tempfile.mkdtemp(prefix="rempart-testnet-")
        net = json.loads(subprocess.run(
            [binary, "ledger", "testnet", "--dir", net_dir, "--validators", str(validators),
             "--gate-key", key], check=True, capture_output=True, text=True).stdout)
        for config in net["configs"]:
            children.append(subprocess.Popen(
                [binary, "validator", "--config", config], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"}))
        extra = ["--consortium-genesis", net["genesis"],
                 "--consortium-validators", ",".join(net["api"])]
    node = subprocess.Popen(
        [binary, "demo", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--data-dir", data] + extra,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "error"})
    tokens, grpc_addr, metrics = {}, None, None
    for line in node.stdout:
        line = line.strip()
        if line == "ready":
            break
        fields = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if line.startswith("listening"):
            grpc_addr, metrics = fields["grpc"], fields["metrics"]
        elif line.startswith("api-key"):
            tokens[fields["name"]] = fields["token"]

    def metric(name):
        body = urllib.request.urlopen(f"http://{metrics}/metrics").read().decode()
        m = re.search(rf"^rempart_{name} (\S+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    def order(side, qty):
        return trading_pb2.PlaceOrderRequest(
            market="CITY/EUR", side=side, order_type=trading_pb2.ORDER_TYPE_LIMIT,
            time_in_force=trading_pb2.TIME_IN_FORCE_GTC, price="3", quantity=str(qty))

    trading = trading_pb2_grpc.TradingStub(grpc.insecure_channel(grpc_addr))
    alice = [("authorization", f"Bearer {tokens['alice']}")]
    bob = [("authorization", f"Bearer {tokens['bob']}")]
    total = 0.0
    try:
        for r in range(rounds):
            for _ in range(k):
                trading.PlaceOrder(order(trading_pb2.SIDE_SELL, 1), metadata=alice)
            base = metric("settled_transfers_total")
            sweep = trading.PlaceOrder(order(trading_pb2.SIDE_BUY, k), metadata=bob)
            assert sweep.status == trading_pb2.ORDER_STATUS_FILLED, sweep.status
            acked = time.time()
            while (metric("settlement_lag_seq") != 0
                   or metric("settled_transfers_total") - base < 2 * k):
                time.sleep(0.005)
            took = time.time() - acked
            total += took
            print({"round": r, "trades": k, "settled_after_ack_ms": round(took * 1000),
                   "trades_settled_per_sec": round(k / took)})
        print({"trades_settled_per_sec": round(rounds * k / total),
               "ledger_height": metric("ledger_height")})
    finally:
        node.terminate()
        node.wait()
        for child in children:
            child.kill()
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
