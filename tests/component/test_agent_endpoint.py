"""Agent code driving the model through the OpenAI-compatible endpoint, with the `openai` client:
token-exact stitching, segments, batching across agents, tool calls, limits and failures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from alignkit.config.sampling import SamplingParams
from alignkit.envs.agent_runner import run_agents
from alignkit.envs.agent_server import AgentServer
from alignkit.envs.loop import Episode, Limits
from alignkit.errors import AlignkitError

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "envs"))
from envs_helpers import ScriptedEngine  # noqa: E402

pytest.importorskip("openai", reason="the agent tests drive the endpoint with the openai client")

PARAMS = SamplingParams(max_new_tokens=256, seed=1)


def reply(prompt: str) -> str:
    if "weather" in prompt and "<|im_start|>tool" not in prompt:
        return '<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
    return f"answer {prompt.count('<|im_start|>user')}"


@pytest.fixture
def serve(tokenizer):
    servers = []

    def make(limits=None, batch_wait_s=5.0):
        engine = ScriptedEngine(tokenizer, reply)
        server = AgentServer(engine, tokenizer, PARAMS, limits or Limits(), batch_wait_s=batch_wait_s).start()
        servers.append(server)
        return server, engine

    yield make
    for s in servers:
        s.stop()


def two_questions(client, record):
    messages = [{"role": "user", "content": record["q"]}]
    first = client.chat.completions.create(model="policy", messages=messages)
    messages += [first.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "and then?"}]
    second = client.chat.completions.create(model="policy", messages=messages)
    return float(second.choices[0].message.content == "answer 2")


def test_sync_agent_is_stitched_into_one_token_exact_segment(serve, tokenizer):
    server, engine = serve()
    (traj,) = run_agents(server, two_questions, [Episode({"q": "hello"})], timeout_s=30)
    assert traj.reward == 1.0 and not traj.failed and traj.segment == 0 and len(traj.turns) == 2
    for turn, sampled in zip(traj.turns, engine.samples, strict=True):
        assert traj.ids[turn.start:turn.end] == sampled
    conversation = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "answer 1"},
                    {"role": "user", "content": "and then?"}, {"role": "assistant", "content": "answer 2"}]
    assert tokenizer.decode(traj.ids) == tokenizer.apply_chat_template(conversation, tokenize=False).removesuffix("\n")
    assert traj.turn_rewards == [0.0, 1.0]


def test_requests_of_many_agents_share_engine_calls(serve):
    server, engine = serve()
    trajs = run_agents(server, two_questions, [Episode({"q": f"q{i}"}, group=i // 2) for i in range(4)],
                       timeout_s=30)
    assert [t.reward for t in trajs] == [1.0] * 4 and [t.group for t in trajs] == [0, 0, 1, 1]
    assert [n for n, _ in engine.calls] == [4, 4]  # both turns of all four agents in one call each
    assert [p.seed for _, p in engine.calls] == [1, 1 + 7919]


async def weather_agent(client, record):
    tools = [{"type": "function", "function": {"name": "weather", "description": "The weather in a city.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.chat.completions.create(model="policy", messages=messages, tools=tools)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = await client.chat.completions.create(model="policy", messages=messages, tools=tools)
    return 2.0 if second.choices[0].message.content.startswith("answer") else 0.0


def test_async_agent_with_tool_calls(serve, tokenizer):
    server, engine = serve()
    (traj,) = run_agents(server, weather_agent, [Episode({})], timeout_s=30)
    assert traj.reward == 2.0 and traj.segment == 0 and len(traj.turns) == 2
    assert traj.tool_calls_ok == 1 and traj.tool_calls_failed == 0
    assert tokenizer.decode(traj.ids[traj.turns[0].end:traj.turns[1].start]) == \
        "\n<|im_start|>tool\nsunny<|im_end|>\n<|im_start|>assistant\n"


def rewriting_agent(client, record):
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "long history"}])
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "summary"}])
    return 0.5


def test_a_request_that_does_not_extend_starts_a_new_segment(serve, tokenizer):
    server, _ = serve()
    first, second = run_agents(server, rewriting_agent, [Episode({})], timeout_s=30)
    assert (first.segment, second.segment) == (0, 1) and first.reward == second.reward == 0.5
    assert "summary" in tokenizer.decode(second.prompt_ids) and "long history" not in tokenizer.decode(second.ids)


def completions_agent(client, record):
    first = client.completions.create(model="policy", prompt="once upon", max_tokens=3)
    ids = first.model_extra["prompt_token_ids"] + first.choices[0].model_extra["token_ids"]
    second = client.completions.create(model="policy", prompt=ids + [10, 11], max_tokens=3)
    return float(len(second.choices[0].model_extra["token_ids"]) == 3)


def test_completions_with_token_ids_continue_the_segment(serve, tokenizer):
    server, engine = serve()
    (traj,) = run_agents(server, completions_agent, [Episode({})], timeout_s=30)
    assert traj.reward == 1.0 and len(traj.turns) == 2 and traj.turns[0].finish_reason == "length"
    assert traj.prompt_ids == tokenizer("once upon")["input_ids"]
    assert traj.ids[traj.turns[0].end:traj.turns[1].start] == [10, 11]
    assert traj.trained == [0] * len(traj.prompt_ids) + [1] * 3 + [0, 0] + [1] * 3


def looping_agent(client, record):
    messages = [{"role": "user", "content": "go"}]
    while True:
        out = client.chat.completions.create(model="policy", messages=messages)
        messages += [out.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "more"}]


def test_limits_truncate_the_run(serve):
    server, _ = serve(limits=Limits(max_turns=3))
    (traj,) = run_agents(server, looping_agent, [Episode({})], timeout_s=30)
    assert traj.truncated and traj.truncation == "max_turns" and not traj.failed and len(traj.turns) == 3
    assert traj.reward == 0.0
    server, _ = serve(limits=Limits(max_tokens=40))
    (traj,) = run_agents(server, looping_agent, [Episode({})], timeout_s=30)
    assert traj.truncation == "max_tokens" and len(traj.ids) - len(traj.prompt_ids) <= 40


def failing_agent(client, record):
    if record["how"] == "raise":
        raise RuntimeError("agent bug")
    if record["how"] == "hang":
        time.sleep(5)
    if record["how"] == "text":
        client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "x"}])
        return "great"
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "x"}])
    return 1.0


def test_failed_runs(serve):
    server, _ = serve(batch_wait_s=0.01)
    start = time.monotonic()
    trajs = run_agents(server, failing_agent, [Episode({"how": h}) for h in ("raise", "hang", "text", "ok")],
                       timeout_s=1.0)
    assert time.monotonic() - start < 4
    raised, hung, text, ok = trajs
    assert raised.failed and raised.error.startswith("RuntimeError: agent bug (test_agent_endpoint.py:")
    assert hung.failed and hung.error == "timed out after 1 s (--env.agent_timeout_s)"
    assert text.failed and text.error == "the agent returned 'great'; it must return the reward, a finite number"
    assert not ok.failed and ok.reward == 1.0
    with pytest.raises(AlignkitError) as e:
        run_agents(server, failing_agent, [Episode({"how": "raise"})], timeout_s=5)
    assert str(e.value).startswith("all 1 agent runs failed; the first: RuntimeError: agent bug")


def test_bad_requests_are_refused(serve):
    server, _ = serve()
    run = server.open_run()
    url = server.base_url(run)
    body = {"model": "policy", "messages": [{"role": "user", "content": "x"}], "n": 2}
    answer = httpx.post(f"{url}/chat/completions", json=body, timeout=10)
    assert answer.status_code == 400 and "n=1, stream=false" in answer.json()["detail"]
    models = httpx.get(f"{url}/models", timeout=10).json()
    assert models["data"][0]["id"] == "alignkit-policy"
    server.close_run(run)
    gone = httpx.post(f"{url}/chat/completions", json=body | {"n": 1}, timeout=10)
    assert gone.status_code == 404 and gone.json()["detail"] == f"alignkit: no open agent run '{run}' (it ended or timed out)"


def calculator_reply(prompt: str) -> str:
    """Calls the calculator on the question, then copies its result (the transcripts' behaviour)."""
    from alignkit.envs.calculator_task import tool_call_text

    question = prompt.split("<|im_start|>user\n", 1)[1].split("=", 1)[0]
    if "<|im_start|>tool" not in prompt:
        return tool_call_text(question)
    return prompt.rsplit("<|im_start|>tool\n", 1)[1].split("<|im_end|>", 1)[0]


def test_agent_code_and_tool_environment_give_the_same_trajectory(tokenizer):
    """The example's OpenAI-client agent and the tool environment (--env.tools) on the same task and
    the same model behaviour produce the same token ids, masks and rewards."""
    from alignkit.config.env import EnvConfig
    from alignkit.envs.calculator_task import records
    from alignkit.envs.factory import build_env_factory
    from alignkit.envs.loop import run_episodes
    from alignkit.rewards.rules import build_rule
    from alignkit.user_code import load_object

    example = Path(__file__).parents[2] / "examples" / "agents" / "calculator.py"
    episodes = [Episode(r, group=i) for i, r in enumerate(records("prompt", 3, seed=4))]
    server = AgentServer(ScriptedEngine(tokenizer, calculator_reply), tokenizer, PARAMS, Limits()).start()
    try:
        agent_trajs = run_agents(server, load_object(f"{example}:run", "--agent"), episodes, timeout_s=30)
    finally:
        server.stop()
    make_env = build_env_factory(EnvConfig(tools=[f"{example}:calc"]), build_rule("exact"))
    env_trajs = run_episodes(ScriptedEngine(tokenizer, calculator_reply), tokenizer, make_env, episodes, PARAMS,
                             Limits())
    for a, e in zip(agent_trajs, env_trajs, strict=True):
        assert a.reward == e.reward == 1.0 and len(a.turns) == len(e.turns) == 2
        assert (a.ids, a.trained, a.logprobs, a.turns) == (e.ids, e.trained, e.logprobs, e.turns)
