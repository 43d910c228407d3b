#!/usr/bin/env python3
"""Loopback stand-in for Anthropic's Messages API, good enough to drive the real Claude Code CLI.

Lets us check what `claude -p --output-format stream-json` prints for chosen token counts,
multi-turn tool use, retries and kills, without network access or an API key. Standard
library only; one thread per connection.

Every flag below can also be set by an environment variable FAKE_API_<FLAG> (e.g.
FAKE_API_TURNS=3); the flag wins. docs/real-claude-notes.md says what Claude Code does with it.

Conversation state is derived from each request (number of assistant messages already in
`messages`), so one server can serve many concurrent Claude Code processes.
"""

import argparse
import itertools
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_LOG_LOCK = threading.Lock()
_ERROR_LOCK = threading.Lock()
_SSE_ERROR_LOCK = threading.Lock()
_COUNTER = itertools.count(1)


def env_default(name, default):
    return os.environ.get("FAKE_API_" + name.upper().replace("-", "_"), default)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--host", default=env_default("host", "127.0.0.1"), help="bind address (loopback only, please)")
    a("--port", type=int, default=int(env_default("port", "0")), help="0 = pick a free port and print it")
    a("--port-file", default=env_default("port-file", None), help="also write the chosen port to this file")
    a("--input-tokens", type=int, default=int(env_default("input-tokens", "1000")), help="usage.input_tokens per main call")
    a("--output-tokens", type=int, default=int(env_default("output-tokens", "50")), help="final usage.output_tokens per main call")
    a("--cache-creation", type=int, default=int(env_default("cache-creation", "0")), help="cache_creation_input_tokens per main call")
    a("--cache-1h", type=int, default=int(env_default("cache-1h", "0")),
      help="of --cache-creation, how many are 1-hour cache writes (usage.cache_creation breakdown)")
    a("--cache-read", type=int, default=int(env_default("cache-read", "0")), help="cache_read_input_tokens per main call")
    a("--start-output-tokens", type=int, default=int(env_default("start-output-tokens", "1")),
      help="output_tokens reported in message_start (the real API says 1 or so)")
    a("--side-usage", default=env_default("side-usage", "10,1,0,0"),
      help="in,out,cache_write,cache_read for side calls (no tools / non-streaming: titles, quota checks)")
    a("--turns", type=int, default=int(env_default("turns", "1")),
      help="main-loop responses per conversation: the first N-1 end in tool_use, the last in end_turn")
    a("--tool", default=env_default("tool", "Bash"), help="tool to call on non-final turns: Bash, Read, Glob, or any name")
    a("--tool-command", default=env_default("tool-command", "echo hi"),
      help="for Bash: the command ('{turn}' is replaced by the turn number); for Read: a path; for Glob: a "
           "pattern; for Task/Agent: the subagent prompt")
    a("--text", default=env_default("text", "turn {turn} of {turns}."), help="assistant text per turn")
    a("--model", default=env_default("model", None), help="model to report (default: echo the request's model)")
    a("--delay", type=float, default=float(env_default("delay", "0")), help="seconds to sleep before each SSE event")
    a("--first-byte-delay", type=float, default=float(env_default("first-byte-delay", "0")),
      help="seconds to sleep before answering a main call at all")
    a("--output-steps", type=int, default=int(env_default("output-steps", "1")),
      help="send K message_delta events with cumulative output_tokens growing to --output-tokens. The real "
           "API sends one; Claude Code 2.1.197 adds every message_delta to modelUsage/total_cost_usd (input "
           "counted K times, output summed), so K>1 inflates the result: only for testing live parsers")
    a("--delta-full-usage", action="store_true", default=env_default("delta-full-usage", "") == "1",
      help="message_delta.usage also carries input/cache fields (as the current API does)")
    a("--error-status", type=int, default=int(env_default("error-status", "529")), help="status for injected errors (429/529/500…)")
    a("--error-count", type=int, default=int(env_default("error-count", "0")),
      help="answer the first N main calls (server-wide) with --error-status")
    a("--retry-after", default=env_default("retry-after", "0"), help="retry-after header value on injected errors ('' = none)")
    a("--ratelimit-headers", default=env_default("ratelimit-headers", ""),
      help="add anthropic-ratelimit-unified-* headers: 'allowed', 'warning' or 'rejected'")
    a("--sse-error-count", type=int, default=int(env_default("sse-error-count", "0")),
      help="the first N streamed main calls (server-wide) fail mid-stream: message_start, one text block, then an "
           "SSE `error` event (overloaded_error) and the end of the stream. Claude Code then re-issues the call "
           "without streaming")
    a("--web-search", type=int, default=int(env_default("web-search", "0")),
      help="usage.server_tool_use.web_search_requests per main call (Claude Code adds $0.01 each)")
    a("--speed", default=env_default("speed", ""), help="usage.speed per main call, e.g. 'fast' ('' = leave it out)")
    a("--delta-input-tokens", type=int, default=int(env_default("delta-input-tokens", "-1")),
      help="input_tokens in message_delta.usage (-1 = leave it out); Claude Code takes a value above 0 instead of "
           "message_start's")
    a("--subagent-model", default=env_default("subagent-model", ""),
      help="for --tool Task/Agent: the `model` the subagent is asked to run on (e.g. haiku)")
    a("--subagent-usage", default=env_default("subagent-usage", ""),
      help="in,out,cache_write,cache_read for calls made by a subagent (requests that do not offer --tool); "
           "default: the main call usage")
    a("--subagent-turns", type=int, default=int(env_default("subagent-turns", "1")),
      help="responses per subagent conversation (the first N-1 call Bash 'echo sub'); a subagent request is "
           "one whose first user message is the --tool-command prompt")
    a("--log", default=env_default("log", None), help="append one JSON line per request here (default: stderr)")
    a("--log-bodies", action="store_true", default=env_default("log-bodies", "") == "1",
      help="log the full request body (large: system prompt and tools)")
    return p.parse_args(argv)


ARGS = None


def log(record):
    record = {"ts": round(time.time(), 3), **record}
    line = json.dumps(record, separators=(",", ":"))
    with _LOG_LOCK:
        if ARGS.log:
            with open(ARGS.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            print(line, file=sys.stderr, flush=True)


def side_usage():
    parts = [int(x) for x in ARGS.side_usage.split(",")]
    parts += [0] * (4 - len(parts))
    return {"input_tokens": parts[0], "output_tokens": parts[1],
            "cache_creation_input_tokens": parts[2], "cache_read_input_tokens": parts[3]}


def main_usage(subagent=False):
    u = {"input_tokens": ARGS.input_tokens, "output_tokens": ARGS.output_tokens,
         "cache_creation_input_tokens": ARGS.cache_creation, "cache_read_input_tokens": ARGS.cache_read}
    if subagent and ARGS.subagent_usage:
        parts = [int(x) for x in ARGS.subagent_usage.split(",")] + [0, 0, 0, 0]
        u = {"input_tokens": parts[0], "output_tokens": parts[1],
             "cache_creation_input_tokens": parts[2], "cache_read_input_tokens": parts[3]}
        return u
    if ARGS.web_search:
        u["server_tool_use"] = {"web_search_requests": ARGS.web_search, "web_fetch_requests": 0}
    if ARGS.speed:
        u["speed"] = ARGS.speed
    if ARGS.cache_1h:
        u["cache_creation"] = {"ephemeral_5m_input_tokens": max(0, ARGS.cache_creation - ARGS.cache_1h),
                               "ephemeral_1h_input_tokens": ARGS.cache_1h}
    return u


def last_user_text(msgs):
    """Text of the latest user message, to see which prompt Claude Code actually sent."""
    for m in reversed(msgs):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        texts = [b.get("text", "") for b in c or [] if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return texts[-1]
    return ""


def is_subagent(msgs):
    """A Task/Agent subagent's conversation starts with the prompt we gave it."""
    if ARGS.tool not in ("Task", "Agent"):
        return False
    for m in msgs:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        texts = [c] if isinstance(c, str) else [b.get("text", "") for b in c or [] if isinstance(b, dict)]
        return any(t.strip() == ARGS.tool_command for t in texts)
    return False


def tool_input(turn):
    cmd = ARGS.tool_command.replace("{turn}", str(turn))
    if ARGS.tool == "Bash":
        return {"command": cmd, "description": "fake-api tool call"}
    if ARGS.tool == "Read":
        return {"file_path": cmd}
    if ARGS.tool == "Glob":
        return {"pattern": cmd}
    if ARGS.tool in ("Task", "Agent"):
        inp = {"description": "fake subagent", "prompt": cmd, "subagent_type": "general-purpose"}
        if ARGS.subagent_model:
            inp["model"] = ARGS.subagent_model
        return inp
    return {"command": cmd}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic-api/1"

    def log_message(self, fmt, *args):  # http.server's own access log: replaced by log()
        pass

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return raw, json.loads(raw) if raw else {}
        except ValueError:
            return raw, None

    def _json(self, status, obj, extra_headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake_%d" % next(_COUNTER))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):
        log({"method": "HEAD", "path": self.path})
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        log({"method": "GET", "path": self.path, "note": "unknown path"})
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake api: no GET " + self.path}})

    def do_POST(self):
        raw, body = self._body()
        path = self.path.split("?")[0]
        if path == "/v1/messages/count_tokens":
            n = len(raw) // 4
            log({"method": "POST", "path": self.path, "kind": "count_tokens", "answer": n})
            return self._json(200, {"input_tokens": n})
        if path != "/v1/messages":
            log({"method": "POST", "path": self.path, "note": "unknown path", "bytes": len(raw)})
            return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake api: no POST " + path}})
        if body is None:
            return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad JSON"}})
        self.messages(body)

    def messages(self, body):
        msgs = body.get("messages") or []
        stream = bool(body.get("stream"))
        has_tools = bool(body.get("tools"))
        model = ARGS.model or body.get("model") or "claude-sonnet-4-5"
        main = has_tools  # the non-streaming fallback after a failed stream offers tools too
        turn = 1 + sum(1 for m in msgs if m.get("role") == "assistant")
        rec = {"method": "POST", "path": self.path, "kind": "main" if main else "side", "stream": stream,
               "req_model": body.get("model"), "turn": turn, "user_text": last_user_text(msgs)[:200],
               "n_messages": len(msgs),
               "n_tools": len(body.get("tools") or []), "max_tokens": body.get("max_tokens"),
               "beta": self.headers.get("anthropic-beta"), "ua": self.headers.get("user-agent"),
               "x_app": self.headers.get("x-app")}
        if ARGS.log_bodies:
            rec["body"] = body
        if main and ARGS.error_count > 0:
            with _ERROR_LOCK:
                inject = ARGS.error_count > 0
                if inject:
                    ARGS.error_count -= 1
            if inject:
                rec["answer"] = "error %d" % ARGS.error_status
                log(rec)
                return self.error_reply()
        log(rec)
        if main and ARGS.first_byte_delay:
            time.sleep(ARGS.first_byte_delay)
        if main:
            # A request that does not offer our tool (e.g. a subagent without Task) just ends.
            offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
            sub = is_subagent(msgs)
            if sub:
                final = turn >= ARGS.subagent_turns or "Bash" not in offered
            else:
                final = turn >= ARGS.turns or ARGS.tool not in offered
            text = ARGS.text.replace("{turn}", str(turn)).replace("{turns}", str(ARGS.turns))
            content = [{"type": "text", "text": text}]
            if not final and sub:
                content.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": "Bash",
                                "input": {"command": "echo sub", "description": "fake subagent tool call"}})
            elif not final:
                content.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": ARGS.tool,
                                "input": tool_input(turn)})
            usage = main_usage(subagent=sub)
        else:
            final = True
            content = [{"type": "text", "text": "fake side answer"}]
            usage = side_usage()
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        stop_reason = "end_turn" if final else "tool_use"
        fail = False
        if main and ARGS.sse_error_count > 0:
            with _SSE_ERROR_LOCK:
                fail = ARGS.sse_error_count > 0
                if fail:
                    ARGS.sse_error_count -= 1
        if fail:
            rec = {"note": "failing this stream mid-way", "msg_id": msg_id}
            log(rec)
        if stream:
            self.sse(msg_id, model, content, usage, stop_reason, fail=fail)
        else:
            self._json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
                             "stop_reason": stop_reason, "stop_sequence": None, "usage": usage},
                       self.ratelimit_headers())

    def ratelimit_headers(self):
        mode = ARGS.ratelimit_headers
        if not mode:
            return []
        reset = str(int(time.time()) + 3600)
        h = [("anthropic-ratelimit-unified-reset", reset),
             ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
             ("anthropic-ratelimit-unified-5h-utilization", "0.95"),
             ("anthropic-ratelimit-unified-5h-reset", reset)]
        if mode == "warning":
            h += [("anthropic-ratelimit-unified-status", "allowed_warning"),
                  ("anthropic-ratelimit-unified-5h-surpassed-threshold", "0.9")]
        elif mode == "rejected":
            h += [("anthropic-ratelimit-unified-status", "rejected")]
        else:
            h += [("anthropic-ratelimit-unified-status", "allowed")]
        return h

    def error_reply(self):
        status = ARGS.error_status
        kind = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error", 401: "authentication_error",
                400: "invalid_request_error"}.get(status, "api_error")
        extra = self.ratelimit_headers()
        if ARGS.retry_after != "":
            extra.append(("retry-after", ARGS.retry_after))
        self._json(status, {"type": "error", "error": {"type": kind, "message": "fake %s" % kind}}, extra)

    def sse(self, msg_id, model, content, usage, stop_reason, fail=False):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", "req_fake_%d" % next(_COUNTER))
        for k, v in self.ratelimit_headers():
            self.send_header(k, v)
        self.end_headers()

        def send(event, data):
            if ARGS.delay:
                time.sleep(ARGS.delay)
            payload = ("event: %s\ndata: %s\n\n" % (event, json.dumps(data, separators=(",", ":")))).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()

        try:
            start_usage = dict(usage, output_tokens=min(ARGS.start_output_tokens, usage["output_tokens"]))
            send("message_start", {"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
            send("ping", {"type": "ping"})
            steps = max(1, ARGS.output_steps)
            if fail:
                send("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}})
                send("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": "partial "}})
                send("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            for i, block in enumerate(content):
                if block["type"] == "text":
                    send("content_block_start", {"type": "content_block_start", "index": i,
                                                 "content_block": {"type": "text", "text": ""}})
                    send("content_block_delta", {"type": "content_block_delta", "index": i,
                                                 "delta": {"type": "text_delta", "text": block["text"]}})
                else:
                    send("content_block_start", {"type": "content_block_start", "index": i,
                                                 "content_block": dict(block, input={})})
                    send("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
                send("content_block_stop", {"type": "content_block_stop", "index": i})
            for k in range(1, steps + 1):
                out = usage["output_tokens"] * k // steps
                du = {"output_tokens": out}
                if ARGS.delta_full_usage:
                    du = dict(usage, output_tokens=out)
                if ARGS.delta_input_tokens >= 0:
                    du["input_tokens"] = ARGS.delta_input_tokens
                last = k == steps
                send("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": stop_reason if last else None, "stop_sequence": None},
                                       "usage": du})
            send("message_stop", {"type": "message_stop"})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as e:
            log({"note": "client went away mid-stream", "error": type(e).__name__, "msg_id": msg_id})
            self.close_connection = True


def main(argv=None):
    global ARGS
    ARGS = parse_args(sys.argv[1:] if argv is None else argv)
    server = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    print("fake-anthropic-api listening on http://%s:%d" % (ARGS.host, port), flush=True)
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(ARGS.port_file + ".tmp", ARGS.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
