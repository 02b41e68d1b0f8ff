"""A tiny handshake-era stdio MCP server whose tools misbehave on purpose (crash, hang, flood, garbage).

Standard library only, so it starts in milliseconds. Tools:
  echo(text)            answers normally
  big(mib)              answers with a text of `mib` MiB (one stdout line of that size)
  crash()               exits with status 3 without answering
  hang()                never answers this request (other requests still work)
  freeze()              stops reading and answering anything at all
  flood_stderr(lines)   writes that many lines to stderr, then answers
  garbage()             prints non-JSON lines to stdout, then answers
  pid()                 answers with its process id
  chatty(kib)           sends a log notification, then answers with a text of `kib` KiB
  routed(region)        answers with the region; its schema routes `region` in an Mcp-Param-Region header
  raw()                 answers with the exact JSON-RPC message it received, and its environment
  ask(question, delay)  asks the client (sampling/createMessage) and answers with the client's reply
                        `delay` seconds after it came
  deep(depth)           prints a JSON line nested `depth` levels deep, then answers
  odd_message()         prints well-formed JSON that is not a valid MCP message (progress with list params,
                        a response with a string error code), then answers
  bad_answer()          answers with a result that is not an object (invalid JSON-RPC)
  progress(count)       sends `count` progress notifications for the request's token and the answer, in one write
  deaf()                answers, then never reads stdin again (a server stuck in a blocking call)
  long_line(mib)        writes `mib` MiB without a newline, then a newline, then answers
  received()            answers with the methods of every message this process has received, in order
                        (a JSON list; the client's answers to its questions appear as null)
  fail(code)            answers with a JSON-RPC error of that code
"""

import json
import os
import sys
import time

TOOLS = ["echo", "big", "crash", "hang", "freeze", "flood_stderr", "garbage", "pid", "ask", "raw", "chatty", "routed"]
TOOLS += ["deep", "odd_message", "bad_answer", "progress", "long_line", "deaf", "received", "fail"]
ROUTED_SCHEMA = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
ASKED = {}  # our request id -> the tools/call request id waiting for the answer
RECEIVED = []  # the method of every message received (None for a response), for received()


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text_result(request_id, text):
    send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}})


def call_tool(request_id, name, args, message=None):
    if name == "raw":
        text_result(request_id, json.dumps({"message": message, "environ": dict(os.environ)}))
    elif name == "chatty":
        log = {"level": "info", "logger": "misbehaving", "data": "working on it"}
        send({"jsonrpc": "2.0", "method": "notifications/message", "params": log})
        text_result(request_id, "c" * int(float(args.get("kib", 1)) * 1024))
    elif name == "routed":
        text_result(request_id, "region " + str(args.get("region")))
    elif name == "echo":
        text_result(request_id, str(args.get("text", "")))
    elif name == "big":
        text_result(request_id, "x" * int(float(args.get("mib", 1)) * 1024 * 1024))
    elif name == "crash":
        os._exit(3)
    elif name == "hang":
        return
    elif name == "freeze":
        time.sleep(3600)
    elif name == "flood_stderr":
        for i in range(int(args.get("lines", 10000))):
            sys.stderr.write(f"flood line {i} " + "y" * 100 + "\n")
        sys.stderr.flush()
        text_result(request_id, "flooded")
    elif name == "garbage":
        sys.stdout.write("this is not JSON\n{broken json\n")
        sys.stdout.flush()
        text_result(request_id, "after garbage")
    elif name == "deep":
        depth = int(args.get("depth", 100000))
        sys.stdout.write("[" * depth + "]" * depth + "\n")
        sys.stdout.flush()
        text_result(request_id, "deep done")
    elif name == "odd_message":
        send({"jsonrpc": "2.0", "method": "notifications/progress", "params": [1, 2]})
        send({"jsonrpc": "2.0", "method": "notifications/message", "params": "not an object"})
        send({"jsonrpc": "2.0", "id": 987654321, "error": {"code": "E_ODD", "message": "odd"}})
        send({"jsonrpc": "2.0", "id": [1], "result": {}})
        send({"jsonrpc": "2.0", "id": "x", "method": ["not", "a", "string"]})
        text_result(request_id, "odd done")
    elif name == "bad_answer":
        send({"jsonrpc": "2.0", "id": request_id, "result": "not an object"})
    elif name == "progress":
        token = ((message or {}).get("params") or {}).get("_meta", {}).get("progressToken")
        lines = []  # one write for all, so that the bridge reads them in a burst
        for i in range(int(args.get("count", 1000))):
            progress = {"progressToken": token, "progress": i}
            lines.append(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}))
        result = {"content": [{"type": "text", "text": "progress done"}]}
        lines.append(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    elif name == "long_line":
        chunk = "x" * (1024 * 1024)
        for _ in range(int(float(args.get("mib", 1)))):
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
        sys.stdout.flush()
        text_result(request_id, "long line done")
    elif name == "deaf":
        text_result(request_id, "not listening any more")
        time.sleep(3600)
    elif name == "pid":
        text_result(request_id, str(os.getpid()))
    elif name == "received":
        text_result(request_id, json.dumps(RECEIVED))
    elif name == "fail":
        error = {"code": int(args.get("code", -32603)), "message": "failed on purpose"}
        send({"jsonrpc": "2.0", "id": request_id, "error": error})
    elif name == "ask":
        ask_id = f"ask-{request_id}"
        ASKED[ask_id] = (request_id, float(args.get("delay", 0)))
        question = {"role": "user", "content": {"type": "text", "text": str(args.get("question", "?"))}}
        params = {"messages": [question], "maxTokens": 10}
        send({"jsonrpc": "2.0", "id": ask_id, "method": "sampling/createMessage", "params": params})
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        RECEIVED.append(method)
        if method is None and request_id in ASKED:
            waiting, delay = ASKED.pop(request_id)
            time.sleep(delay)
            if "result" in message:
                text_result(waiting, "client said: " + message["result"]["content"]["text"])
            else:
                text_result(waiting, "client refused: " + message["error"]["message"])
            continue
        if method == "notifications/cancelled":
            sys.stderr.write(f"cancelled request {(message.get('params') or {}).get('requestId')}\n")
            sys.stderr.flush()
        if request_id is None or method is None:
            continue  # notifications and other responses
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "protocolVersion": message["params"].get("protocolVersion", "2025-06-18"),
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "misbehaving", "version": "1.0"},
                    },
                }
            )
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/list":
            sys.stderr.write("tools/list served\n")
            sys.stderr.flush()
            time.sleep(float(os.environ.get("MISBEHAVING_TOOLS_LIST_DELAY", "0")))
            tools = [{"name": n, "inputSchema": ROUTED_SCHEMA if n == "routed" else {"type": "object"}} for n in TOOLS]
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools}})
        elif method == "tools/call":
            params = message.get("params") or {}
            call_tool(request_id, params.get("name"), params.get("arguments") or {}, message)
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    main()
