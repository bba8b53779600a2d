"""A stdio MCP server that misbehaves on purpose, for the gateway's robustness tests. Plain
newline-delimited JSON-RPC, no SDK, so that it can do what no SDK would: chatter on stdout, answer
ids nobody asked about, ask the client for sampling, hang, and die.

Tools: `answer` (answers at once), `slow` (never answers in time), `crash` (the process exits),
`forged` (first sends a response to an id the gateway never used, then the real answer),
`chatty` (non-JSON lines on stdout before the answer), `sampling` (asks the client for a sampling
request first). Each start is appended to STATE_DIR/starts when a STATE_DIR argument is given.
"""

import json
import os
import sys
import threading
import time

LOCK = threading.Lock()

STATE = sys.argv[1] if len(sys.argv) > 1 else None
if STATE:
    with open(os.path.join(STATE, "starts"), "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")

print("misbehaving server starting (this line is not JSON-RPC)", flush=True)
print(f"starting for real with token={os.environ.get('MIS_TOKEN')}", file=sys.stderr, flush=True)


def send(obj):
    with LOCK:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def tool(name, description):
    return {"name": name, "description": description, "inputSchema": {"type": "object"}}


TOOLS = [tool("answer", "Answers at once."), tool("slow", "Never answers in time."), tool("crash", "Exits."),
         tool("forged", "Sends an unsolicited response first."), tool("chatty", "Chatters on stdout."),
         tool("sampling", "Asks the client for sampling first.")]

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, rid = msg.get("method"), msg.get("id")
    if rid is None:
        continue
    if method is None:
        # An answer to our sampling request: nothing to do with it.
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                                                     "serverInfo": {"name": "misbehaving", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = msg["params"]["name"]
        ok = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": f"{name} done"}]}}
        if name == "slow":
            # Answers long after any deadline, from a thread, so other calls go on meanwhile.
            threading.Thread(target=lambda ok=ok: (time.sleep(8), send(ok)), daemon=True).start()
        elif name == "crash":
            sys.exit(3)
        elif name == "forged":
            send({"jsonrpc": "2.0", "id": 424242, "result": {"content": [{"type": "text", "text": "forged answer"}]}})
            send({"jsonrpc": "2.0", "id": "not-yours", "result": {"content": [{"type": "text", "text": "forged answer"}]}})
            send(ok)
        elif name == "chatty":
            with LOCK:
                for i in range(50):
                    print(f"progress {i}% [not JSON]", flush=True)
            send(ok)
        elif name == "sampling":
            send({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage",
                  "params": {"messages": [], "maxTokens": 1}})
            send(ok)
        else:
            send(ok)
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method"}})
