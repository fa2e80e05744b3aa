"""The official `openai` Python client against a running Switchyard gateway.

    python tests/python/openai_client.py BASE_URL EXPECTED_TEXT

Checks a non-stream and a stream call with model "auto" (the explain headers included), a
pinned-model call, and that an unknown model raises the client's NotFoundError. Prints one
JSON summary line; exits non-zero with the reason on any mismatch.
"""

import json
import sys

import openai


def main() -> int:
    base_url, expected = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="unused-by-this-gateway", max_retries=0)
    messages = [{"role": "user", "content": "Write a haiku about rivers."}]

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
    completion = raw.parse()
    assert completion.choices[0].message.content == expected, completion
    assert completion.usage.completion_tokens == 5, completion.usage
    request_id = raw.headers["x-switchyard-request-id"]
    served = raw.headers["x-switchyard-model"]
    assert completion.model == served, (completion.model, served)
    for h in ("x-switchyard-route", "x-switchyard-task", "x-switchyard-difficulty",
              "x-switchyard-predicted-quality", "x-switchyard-cache", "x-switchyard-attempts",
              "x-switchyard-cost-usd"):
        assert h in raw.headers, f"missing header {h}"

    stream = client.chat.completions.create(
        model="auto", messages=messages, stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == expected, pieces
    assert usage is not None and usage.total_tokens == 15, usage

    pinned = client.chat.completions.create(model=served, messages=messages)
    assert pinned.choices[0].message.content == expected

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as e:
        assert "does not exist" in str(e), e

    try:
        client.chat.completions.create(model="auto", messages=[])
        raise AssertionError("empty messages must fail")
    except openai.BadRequestError as e:
        assert "at least one message" in str(e), e

    print(json.dumps({"ok": True, "request_id": request_id, "model": served,
                      "stream_text": "".join(pieces), "openai": openai.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
