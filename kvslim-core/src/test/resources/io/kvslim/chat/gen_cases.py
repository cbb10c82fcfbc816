"""Writes cases.json, the chat template test data: for each .jinja template here, the prompts
real Jinja (Python jinja2) renders for them in the environment Hugging Face transformers builds
for chat templates (utils/chat_template_utils.py, _compile_jinja_template: an
ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and the loopcontrols
extension; globals raise_exception and strftime_now; tojson overridden to json.dumps with
ensure_ascii=False) and passes to it as apply_chat_template does (messages, tools=None,
documents=None, add_generation_prompt, and the special tokens).

    cd src/test/resources/io/kvslim/chat && python3 gen_cases.py

The templates are the "chat_template" values of the models' published tokenizer_config.json
(as quoted in llama.cpp tests/test-chat-template.cpp, swift-jinja, axolotl, FastChat and other
projects' test data), decoded from JSON; llama3.2.jinja was quoted without its first line,
"{{- bos_token }}", which is put back. strftime_now is fixed to 2024-07-26 09:05:03.
ChatTemplateCasesTest checks that kvslim renders the same strings.
"""

import json
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The templates are the .jinja files next to this script (written out from the models' published
# tokenizer_config.json "chat_template" values); where each one comes from:
TEMPLATES = {
    "chatml": "teknium/OpenHermes-2.5-Mistral-7B: plain ChatML",
    "qwen2": "Qwen/Qwen2-7B-Instruct",
    "qwen2.5": "Qwen/Qwen2.5-0.5B-Instruct (tool-calling version)",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3.2": "meta-llama/Llama-3.2-1B-Instruct (date, tools, messages[1:] reassigned)",
    "mistral-v0.1": "mistralai/Mistral-7B-Instruct-v0.1 (as TheBloke's quantizations ship it)",
    "mistral-v0.3": "mistralai/Mistral-7B-Instruct-v0.3 (tool-calling version)",
    "gemma": "google/gemma-2b-it",
    "phi3": "microsoft/Phi-3-mini-4k-instruct",
    "llama2": "meta-llama/Llama-2-7b-chat-hf: .strip() on strings and messages[1:]",
    "features": "not a model's: the Python string methods, namespace(), loop controls, tojson and filters HF templates use",
}

TOKENS = {
    "chatml": ("<s>", "<|im_end|>"),
    "qwen2": (None, "<|im_end|>"),
    "qwen2.5": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
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


def strftime_now(fmt):
    # a fixed day, so the expected strings do not change; the Java test fixes its clock to it
    return datetime(2024, 7, 26, 9, 5, 3).strftime(fmt)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    cases = []
    for name in TEMPLATES:
        with open(name + ".jinja", encoding="utf-8") as f:
            source = f.read()
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
