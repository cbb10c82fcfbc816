"""Writes the chat template test data: one .jinja file per template and cases.json, the prompts
real Jinja (Python jinja2) renders for them in the environment Hugging Face transformers builds
for chat templates (utils/chat_template_utils.py, _compile_jinja_template: an
ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and the loopcontrols
extension; globals raise_exception and strftime_now; tojson overridden to json.dumps with
ensure_ascii=False) and passes to it as apply_chat_template does (messages, tools=None,
documents=None, add_generation_prompt, and the special tokens).

    cd src/test/resources/io/kvslim/server/chat && python3 gen_cases.py

The templates are the "chat_template" values of the models' published tokenizer_config.json
(as quoted in llama.cpp tests/test-chat-template.cpp, swift-jinja, axolotl and FastChat test
data), decoded from JSON. ChatTemplateCasesTest checks that kvslim renders the same strings.
"""

import json

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = {
    # teknium/OpenHermes-2.5-Mistral-7B: plain ChatML
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # Qwen/Qwen2-7B-Instruct
    "qwen2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    # mistralai/Mistral-7B-Instruct-v0.1 (as TheBloke's quantizations ship it)
    "mistral-v0.1": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    # mistralai/Mistral-7B-Instruct-v0.3 (tool-calling version)
    "mistral-v0.3": '{%- if messages[0]["role"] == "system" %}\n    {%- set system_message = messages[0]["content"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}\n            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message["role"] == "user" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "[AVAILABLE_TOOLS] [" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- \'{"type": "function", "function": {\' }}\n                {%- for key, val in tool.items() if key != "return" %}\n                    {%- if val is string %}\n                        {{- \'"\' + key + \'": "\' + val + \'"\' }}\n                    {%- else %}\n                        {{- \'"\' + key + \'": \' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- ", " }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- "}}" }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- else %}\n                    {{- "]" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- "[/AVAILABLE_TOOLS]" }}\n            {%- endif %}\n        {%- if loop.first and system_message is defined %}\n            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n        {%- else %}\n            {{- "[INST] " + message["content"] + "[/INST]" }}\n        {%- endif %}\n    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n        {{- "[TOOL_CALLS] [" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n            {%- endif %}\n            {{- \', "id": "\' + tool_call.id + \'"}\' }}\n            {%- if not loop.last %}\n                {{- ", " }}\n            {%- else %}\n                {{- "]" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message["role"] == "assistant" %}\n        {{- " " + message["content"]|trim + eos_token}}\n    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- \'[TOOL_RESULTS] {"content": \' + content|string + ", " }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n        {%- endif %}\n        {{- \'"call_id": "\' + message.tool_call_id + \'"}[/TOOL_RESULTS]\' }}\n    {%- else %}\n        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}\n    {%- endif %}\n{%- endfor %}\n',
    # google/gemma-2b-it
    "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
    # microsoft/Phi-3-mini-4k-instruct
    "phi3": "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
    # meta-llama/Llama-2-7b-chat-hf: exercises .strip() on strings and messages[1:]
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    # Python string methods, namespace(), loop controls, tojson and filters HF templates use
    "features": "{%- set ns = namespace(n=0, seen=[]) -%}\n{%- for m in messages -%}\n  {%- if m.role == 'system' %}{% continue %}{% endif -%}\n  {%- if loop.index0 > 4 %}{% break %}{% endif -%}\n  {%- set ns.n = ns.n + 1 -%}\n  [{{ loop.index0 }}|{{ loop.first }}|{{ loop.last }}] {{ m['role'].title() }}/{{ m.role.upper() }}: {{ m.content.strip() }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}|{{ m['content'] | trim }}\n  {{ m.content.startswith('  Wh') }} {{ m.content.strip().endswith('?') }} {{ m.content.split() | length }} {{ m.content.replace('2', 'two') | trim }} {{ m.get('name', 'anon') }} {{ m.get('tool_calls') is none }}\n{% endfor -%}\ncount={{ ns.n }} {{ messages | length }} {{ messages[-1].content | trim | lower }} {{ (messages | map(attribute='role') | list) | tojson }} {{ {'a': [1, 'x', none, true], 'b': 'é\"'} | tojson }} {{ {'k': 1} | tojson(indent=2) }}\n{{ tools is none }} {{ documents is none }} {{ 'x' if add_generation_prompt else 'y' }} {{ missing is defined }} {{ messages[0] is mapping }} {{ messages[0].content is string }} {{ ' '.join(['a', 'b']) }} {{ 'abc'[1:] }} {{ messages[1:] | length }}\n",
}

TOKENS = {
    "chatml": ("<s>", "<|im_end|>"),
    "qwen2": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-v0.1": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "llama2": ("<s>", "</s>"),
    "features": ("<s>", "</s>"),
}

USER = [{"role": "user", "content": "Hello!"}]
CHAT = [
    {"role": "user", "content": "  What is 2+2?  "},
    {"role": "assistant", "content": " It is 4. "},
    {"role": "user", "content": "And 3+3?\n"},
]
WITH_SYSTEM = [{"role": "system", "content": "You are terse. "}] + CHAT
NOT_ALTERNATING = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
UNICODE = [{"role": "user", "content": "Grüße, 你好 — \"quoted\" \\ back\tslash"}]

CONVERSATIONS = {
    "user": USER,
    "chat": CHAT,
    "system": WITH_SYSTEM,
    "not-alternating": NOT_ALTERNATING,
    "unicode": UNICODE,
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    cases = []
    for name, source in TEMPLATES.items():
        with open(name + ".jinja", "w", encoding="utf-8") as f:
            f.write(source)
        template = env.from_string(source)
        bos, eos = TOKENS[name]
        for conv_name, messages in CONVERSATIONS.items():
            for add in (True, False):
                kwargs = {"eos_token": eos}
                if bos is not None:
                    kwargs["bos_token"] = bos
                case = {
                    "template": name,
                    "conversation": conv_name,
                    "bos_token": bos,
                    "eos_token": eos,
                    "add_generation_prompt": add,
                }
                try:
                    case["output"] = template.render(
                        messages=messages, tools=None, documents=None, add_generation_prompt=add, **kwargs
                    )
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    with open("cases.json", "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "conversations": CONVERSATIONS, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
