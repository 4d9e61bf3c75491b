"""Running any agent code against the agent endpoint: `--agent path/to/file.py:run`.

    def run(client, record) -> float:            # or: async def run(client, record)
        reply = client.chat.completions.create(model="policy", messages=[...], tools=[...])
        ...                                       # call tools, ask again, as often as it likes
        return reward

`client` is an `openai.OpenAI` client (an `openai.AsyncOpenAI` one for an async `run`) whose base URL
is this run's on the agent endpoint (envs/agent_server.py), so code written against the OpenAI API
trains unchanged; `record` is the prompt record. The return value is the run's reward, a finite
number. The runs of one call all start at once, each on a thread of its own (async ones on the
shared event loop), with `timeout_s` for a whole run.

Failure rule (as for environments, envs/loop.py): a run that raises, times out, or returns no finite
number FAILS and its trajectories are dropped from training, unless the endpoint had refused it a
request for reaching a limit (max_turns, max_tokens): then the run is truncated, with reward 0.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from collections.abc import Callable
from typing import Any

from alignkit.envs.agent_server import AgentServer
from alignkit.envs.calls import Outcome, call_all
from alignkit.envs.loop import Episode
from alignkit.envs.trajectory import Trajectory
from alignkit.errors import AlignkitError, ConfigError
from alignkit.user_code import load_object

log = logging.getLogger("alignkit")


def load_agent(spec: str) -> Callable[..., Any]:
    return load_object(spec, "--agent")


def openai_client(base_url: str, is_async: bool, timeout_s: float):
    try:
        import openai
    except ImportError:
        raise ConfigError("--agent needs the OpenAI client: pip install 'alignkit[agents]'") from None
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(base_url=base_url, api_key="alignkit", max_retries=0, timeout=timeout_s)


def _one_run(agent: Callable[..., Any], server: AgentServer, run: str, record: dict[str, Any],
             timeout_s: float) -> Any:
    """The agent's return value (or a coroutine giving it). Afterwards the client is closed and the
    run no longer counts as one the endpoint's batches wait for."""
    url = server.base_url(run)
    if inspect.iscoroutinefunction(agent):
        client = openai_client(url, True, timeout_s)

        async def run_async() -> Any:
            try:
                return await agent(client, record)
            finally:
                server.finish_run(run)
                await client.close()

        return run_async()
    client = openai_client(url, False, timeout_s)
    try:
        return agent(client, record)
    finally:
        server.finish_run(run)
        client.close()


def _reward(out: Outcome) -> tuple[float, str]:
    """(reward, error): the agent's return value checked as a finite number."""
    if not out.ok:
        return 0.0, out.error + (" (--env.agent_timeout_s)" if out.error.startswith("timed out") else "")
    value = out.value.item() if hasattr(out.value, "item") else out.value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return 0.0, f"the agent returned {out.value!r}; it must return the reward, a finite number"
    return float(value), ""


def run_agents(server: AgentServer, agent: Callable[..., Any], episodes: list[Episode],
               timeout_s: float) -> list[Trajectory]:
    """Run `agent` once per episode against `server`; returns the trajectories of every run (one per
    segment, in episode order). Raises AlignkitError when every run failed."""
    runs = [server.open_run() for _ in episodes]
    calls = [lambda run=run, ep=ep: _one_run(agent, server, run, dict(ep.record), timeout_s)
             for run, ep in zip(runs, episodes, strict=True)]
    outcomes = call_all(calls, timeout_s)
    out: list[Trajectory] = []
    for i, (run, ep, outcome) in enumerate(zip(runs, episodes, outcomes, strict=True)):
        record = server.close_run(run)
        reward, error = _reward(outcome)
        if error and not record.truncation:
            log.warning("agent run %d (group %d) failed: %s", i, ep.group, error)
        out += record.trajectories(i, ep.group, reward, error, outcome.seconds)
    if out and all(t.failed for t in out):
        raise AlignkitError(f"all {len(episodes)} agent runs failed; the first: {out[0].error}")
    return out
