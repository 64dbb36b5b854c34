"""The fake LLM server, driven by the official `anthropic` and `openai` SDKs over real HTTP."""

from __future__ import annotations

import json
import threading
import time

import anthropic
import openai
import pytest

from tests.fakellm import error, slow, text, tool, tools

TOOLS_ANTHROPIC = [
    {
        "name": "write_file",
        "description": "write",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        },
    }
]
TOOLS_CHAT = [
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            },
        },
    }
]


def _anthropic(fake_llm):
    return anthropic.Anthropic(base_url=fake_llm.url, api_key="test-key", max_retries=0)


def _openai(fake_llm):
    return openai.OpenAI(base_url=fake_llm.base_url_v1, api_key="test-key", max_retries=0)


def test_anthropic_streaming_tool_round_trip(fake_llm):
    # Given a script: one tool call, then a final answer
    fake_llm.script(
        [
            tool(
                "write_file",
                {"path": "a.txt", "content": "hi"},
                say="Writing.",
                input_tokens=11,
                output_tokens=7,
            ),
            text("All done."),
        ]
    )
    client = _anthropic(fake_llm)
    messages = [{"role": "user", "content": "write a file"}]

    # When the SDK streams the first turn
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=messages, tools=TOOLS_ANTHROPIC
    ) as s:
        first = s.get_final_message()

    # Then it sees the text and the tool call with its full input, and the usage of the turn
    assert first.stop_reason == "tool_use"
    assert first.content[0].text == "Writing."
    call = first.content[1]
    assert (call.name, call.input) == ("write_file", {"path": "a.txt", "content": "hi"})
    assert (first.usage.input_tokens, first.usage.output_tokens) == (11, 7)

    # When it sends the tool result back
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}]},
    ]
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=messages, tools=TOOLS_ANTHROPIC
    ) as s:
        second = s.get_final_message()

    # Then the next turn of the script answers, and both requests were recorded
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "All done."
    reqs = fake_llm.model_requests()
    assert [r.turn for r in reqs] == [0, 1]
    assert reqs[0].api_key == "test-key"
    assert reqs[0].stream is True
    assert reqs[1].body["messages"][-1]["content"][0]["type"] == "tool_result"


def test_anthropic_sse_has_named_events_and_beta_query(fake_llm):
    # Given a tool-call turn; when a raw client posts to /v1/messages?beta=true (as Claude Code does)
    import urllib.request

    fake_llm.script([tool("Bash", {"command": "ls"})])
    body = {
        "model": "m",
        "max_tokens": 10,
        "stream": True,
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "system", "content": "Primary working directory: /x"},
            {"role": "user", "content": [{"type": "text", "text": "go"}]},
        ],
    }
    request = urllib.request.Request(
        fake_llm.url + "/v1/messages?beta=true",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - a local test server
        raw = r.read().decode()

    # Then the stream uses named events in the documented order, and the role "system" entry was tolerated
    events = [line.split(": ", 1)[1] for line in raw.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    partial = "".join(
        json.loads(line[6:])["delta"]["partial_json"]
        for line in raw.splitlines()
        if line.startswith("data: ") and "input_json_delta" in line
    )
    assert json.loads(partial) == {"command": "ls"}
    assert fake_llm.model_requests()[0].query == "beta=true"


def test_anthropic_non_streaming_several_tools(fake_llm):
    # Given a turn with two tool calls
    fake_llm.script([tools(("write_file", {"path": "a"}), ("write_file", {"path": "b"}))])
    # When the SDK asks without streaming
    msg = _anthropic(fake_llm).messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    # Then both calls come back with distinct ids
    assert [b.input["path"] for b in msg.content] == ["a", "b"]
    assert msg.content[0].id != msg.content[1].id


@pytest.mark.parametrize(
    "status, exc",
    [(500, anthropic.InternalServerError), (400, anthropic.BadRequestError)],
    ids=["server-error", "bad-request"],
)
def test_anthropic_http_error(fake_llm, status, exc):
    # Given an error turn; when the SDK calls; then it raises the matching error with the body's message
    fake_llm.script([error(status)])
    with pytest.raises(exc, match=f"fake error {status}"):
        _anthropic(fake_llm).messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


def test_openai_chat_streaming_tool_calls_and_usage(fake_llm):
    # Given a tool call then text
    fake_llm.script(
        [
            tool("write_file", {"path": "a.txt", "content": "hi"}, input_tokens=5, output_tokens=3),
            text("Done."),
        ]
    )
    client = _openai(fake_llm)
    messages = [{"role": "user", "content": "go"}]

    # When the SDK streams the first turn
    stream = client.chat.completions.create(
        model="gpt-x",
        messages=messages,
        tools=TOOLS_CHAT,
        stream=True,
        stream_options={"include_usage": True},
    )
    name, args, call_id, finish, usage = "", "", None, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call_id = tc.id or call_id
                name += tc.function.name or ""
                args += tc.function.arguments or ""

    # Then the tool call is reassembled and usage is reported
    assert (name, json.loads(args), finish) == (
        "write_file",
        {"path": "a.txt", "content": "hi"},
        "tool_calls",
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 3)

    # When the tool result is sent back (non-streaming this time)
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "ok"},
    ]
    done = client.chat.completions.create(model="gpt-x", messages=messages, tools=TOOLS_CHAT)
    # Then the script's second turn answers
    assert done.choices[0].message.content == "Done."
    assert done.choices[0].finish_reason == "stop"


def test_openai_chat_non_streaming_tool_call(fake_llm):
    fake_llm.script([tool("write_file", {"path": "x"})])
    done = _openai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "go"}])
    call = done.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("write_file", {"path": "x"})


def test_openai_responses_streaming_function_call(fake_llm):
    # Given a function call then a message
    fake_llm.script([tool("exec_command", {"cmd": "ls"}), text("Listed.")])
    client = _openai(fake_llm)

    # When the SDK streams a Responses API turn
    with client.responses.stream(model="gpt-x", input="list files") as s:
        first = s.get_final_response()
    call = first.output[0]
    # Then it is a function call with its arguments
    assert (call.type, call.name, json.loads(call.arguments)) == (
        "function_call",
        "exec_command",
        {"cmd": "ls"},
    )

    # When the output is sent back
    second = client.responses.create(
        model="gpt-x",
        input=[
            {"role": "user", "content": "list files"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt"},
        ],
    )
    # Then the final message comes back
    assert second.output_text == "Listed."
    assert [r.turn for r in fake_llm.model_requests()] == [0, 1]


def test_turns_by_call_order(fake_llm):
    # Given a script chosen by call order: an error first, then an answer (a client that retries)
    fake_llm.script([error(500), text("second try")], by="calls")
    client = _anthropic(fake_llm)
    ask = dict(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**ask)
    # When the same request is sent again; then the next turn answers; past the end the last repeats
    assert client.messages.create(**ask).content[0].text == "second try"
    assert client.messages.create(**ask).content[0].text == "second try"


def test_slow_answer_ends_when_server_stops(fake_llm):
    # Given a very slow turn
    fake_llm.script([slow(60)])
    client = anthropic.Anthropic(base_url=fake_llm.url, api_key="k", max_retries=0, timeout=30)
    outcome = {}

    def call():
        try:
            client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        except anthropic.APIError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    fake_llm.wait_for_requests(1)
    # When the server stops while the answer is pending
    started = time.monotonic()
    fake_llm.stop()
    worker.join(timeout=20)
    # Then the client gets a connection error instead of waiting out the delay
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), anthropic.APIConnectionError)
    assert time.monotonic() - started < 20


def test_user_texts_collects_user_messages(fake_llm):
    fake_llm.script([text("ok")])
    _anthropic(fake_llm).messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert fake_llm.model_requests()[0].user_texts() == ["first", "second"]
