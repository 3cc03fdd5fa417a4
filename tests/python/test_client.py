"""A Python gRPC client against a running rempart node.

Generates the client from proto/rempart/v1/*.proto with grpcio-tools into a temporary
directory, then places an order, reads balances and checks that a refusal carries its stable
reject code. Usage: test_client.py --proto-dir DIR --addr HOST:PORT --token TOKEN
Prints "python client: N passed, 0 failed" and exits 0 when every check holds.
"""

import argparse
import glob
import os
import sys
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()

    import grpc
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="rempart-py-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(glob.glob(os.path.join(args.proto_dir, "rempart", "v1", "*.proto")))
    rc = protoc.main(
        ["protoc", f"-I{args.proto_dir}", f"-I{well_known}", f"--python_out={out}",
         f"--grpc_python_out={out}"] + files
    )
    if rc != 0:
        print(f"protoc failed with {rc}", file=sys.stderr)
        return 1
    sys.path.insert(0, out)
    from rempart.v1 import trading_pb2, trading_pb2_grpc, accounts_pb2, accounts_pb2_grpc

    metadata = [("authorization", f"Bearer {args.token}")]
    channel = grpc.insecure_channel(args.addr)
    trading = trading_pb2_grpc.TradingStub(channel)
    accounts = accounts_pb2_grpc.AccountsStub(channel)
    passed = 0

    placed = trading.PlaceOrder(
        trading_pb2.PlaceOrderRequest(
            market="CITY/EUR", side=trading_pb2.SIDE_BUY, order_type=trading_pb2.ORDER_TYPE_LIMIT,
            price="0.25", quantity="3", client_order_id="42"),
        metadata=metadata)
    assert placed.status == trading_pb2.ORDER_STATUS_OPEN, placed
    assert placed.resting_quantity == "3", placed
    assert placed.client_order_id == "42", placed
    passed += 1

    balances = accounts.GetBalances(accounts_pb2.GetBalancesRequest(), metadata=metadata)
    eur = [b for b in balances.balances if b.asset == "EUR"][0]
    assert eur.held != "0", balances
    passed += 1

    try:
        trading.PlaceOrder(
            trading_pb2.PlaceOrderRequest(
                market="CITY/EUR", side=trading_pb2.SIDE_BUY,
                order_type=trading_pb2.ORDER_TYPE_LIMIT, price="0.255", quantity="1"),
            metadata=metadata)
        raise AssertionError("off-grid price accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        codes = [v for k, v in e.trailing_metadata() if k == "rempart-reject-code"]
        assert codes == ["1027"], e.trailing_metadata()
        passed += 1

    try:
        trading.PlaceOrder(trading_pb2.PlaceOrderRequest(market="CITY/EUR"),
                           metadata=[("authorization", "Bearer rk_0.00")])
        raise AssertionError("forged key accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        passed += 1

    print(f"python client: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
