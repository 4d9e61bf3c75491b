"""The calculator task (src/alignkit/envs/calculator_task.py) as a tool and as agent code.

    --env.tools examples/agents/calculator.py:calc --reward.rules exact    (the tool environment)
    --agent examples/agents/calculator.py:run                              (the same task as agent code)

`run` is ordinary OpenAI-client code: it would drive any OpenAI-compatible server the same way.
"""

import json

from transformers.utils import get_json_schema

from alignkit.envs.calculator_task import calc

TOOLS = [get_json_schema(calc)]


def run(client, record) -> float:
    messages = [{"role": "user", "content": record["prompt"]}]
    for _ in range(4):
        out = client.chat.completions.create(model="policy", messages=messages, tools=TOOLS)
        message = out.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return float((message.content or "").strip() == record["label"])
        for call in message.tool_calls:
            try:
                result = calc(**json.loads(call.function.arguments))
            except Exception as e:  # the model's mistake: tell it, as the tool environment does
                result = f"error: {e}"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return 0.0
