"""Reference fixtures for chat templates and tokenization.

For each model family (Llama 3.1, Qwen2.5, Mistral v0.3 Instruct, Gemma, Phi-3, and the new ones:
Qwen3, Gemma 3, Phi-4, Phi-4-mini) this trains a small tokenizer of the same kind as the family's real one (byte-level BPE with the family's
split regex, or SentencePiece-style Metaspace BPE) with the family's special tokens, writes an
ordinary Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json with the
family's chat template, generation_config.json), and records what transformers'
`apply_chat_template` renders and tokenizes for a set of conversations.

The templates in templates/ are the families' published chat templates. Only the small
outputs under tests/fixtures/templates/ are committed.

For Qwen3 the fixtures also hold transformers' own assistant masks (`return_assistant_tokens_mask`)
from two copies of the real template with `{% generation %}` blocks added (they render the same
text, which the script checks): one around each whole assistant turn after its header, thinking
block included (tunelab's `train_on: assistant`), one that leaves a rendered reasoning block out
(`train_on: answers`).

    pip install transformers tokenizers jinja2    # no torch needed
    python tests/reference/make_template_fixtures.py
"""
import json
import pathlib

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "fixtures" / "templates"

LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Oslo"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

CASES = [
    {"name": "single_turn", "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}]},
    {"name": "multi_turn", "messages": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke about cats."},
        {"role": "assistant", "content": "Why did the cat sit on the computer? To keep an eye on the mouse."}]},
    {"name": "system_prompt", "messages": [
        {"role": "system", "content": "You are a pirate. Answer like one."},
        {"role": "user", "content": "Where is the treasure?"},
        {"role": "assistant", "content": "  Arr, under the old oak tree, café-side! ⚓  "}]},
    {"name": "system_multi_turn", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "6"}]},
    {"name": "tool_messages", "tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "What's the weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temperature\": 3, \"sky\": \"cloudy\"}"},
        {"role": "assistant", "content": "It is 3 °C and cloudy in Oslo."}]},
    {"name": "generation_prompt", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Count to three."}]},
]

# Conversations with reasoning (`reasoning_content`, or Qwen3's inline `<think>` block), tool calls
# inside a thinking turn, and `enable_thinking`: for the families added with issue #13.
REASONING_CASES = [
    {"name": "reasoning_single", "messages": [
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "reasoning_content": "17 * 3 = 51, since 17 * 3 = 30 + 21.",
         "content": "51."}]},
    {"name": "reasoning_multi_turn", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "reasoning_content": "Two and two make four.", "content": "4"},
        {"role": "user", "content": "And times three?"},
        {"role": "assistant", "reasoning_content": "\nFour times three is twelve.\n", "content": "12"}]},
    {"name": "reasoning_tool_chain", "tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Should I take an umbrella in Oslo?"},
        {"role": "assistant", "reasoning_content": "I need the weather in Oslo first.", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "{\"rain\": true}"},
        {"role": "assistant", "reasoning_content": "It rains, so yes.", "content": "Yes, it is raining in Oslo."}]},
    {"name": "reasoning_partial", "messages": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "reasoning_content": "91 = 7 * 13, so it is not prime.", "content": "No: 91 = 7 × 13."}]},
    {"name": "no_thinking_prompt", "add_generation_prompt": True, "enable_thinking": False, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"}]},
    {"name": "thinking_prompt", "add_generation_prompt": True, "enable_thinking": True, "messages": [
        {"role": "user", "content": "2+2?"}]},
    {"name": "no_thinking_multi_turn", "enable_thinking": False, "messages": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]},
]

# Qwen3-style data with the reasoning inline in the content: the template splits it itself, and
# tunelab's readers split it into the message's reasoning, so both render the same text.
INLINE_THINK_CASES = [
    {"name": "reasoning_inline", "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nTwo and two make four.\n</think>\n\n4"},
        {"role": "user", "content": "And times three?"},
        {"role": "assistant", "content": "<think>\nFour times three is twelve.\n</think>\n\n12"}]},
]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning adapts a pretrained language model to a task with a small dataset.",
    "Low rank adapters train two small matrices per projection while the base stays frozen.",
    "The weather in Oslo is cold and cloudy; the temperature is 3 degrees celsius.",
    "You are a helpful assistant. Answer the question briefly and politely.",
    "Cutting Knowledge Date: December 2023. Today Date: 26 Jul 2024.",
    "Given the following functions, please respond with a JSON for a function call with its proper arguments.",
    '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}, "type": "function"}',
    "You may call one or more functions to assist with the user query.",
    "café naïve über 東京 ⚓ °C – “quotes” and 'apostrophes' don't won't it's",
    "0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14",
] + [m["content"] for c in CASES for m in c["messages"]]
# The new families' tokenizers also see the reasoning texts (the older ones keep their corpus, so
# their fixtures stay as they were).
REASONING_CORPUS = CORPUS + [
    "<think>\nLet me think step by step.\n</think>\n\nThe answer is 51.",
] + [m.get(k) or "" for c in REASONING_CASES + INLINE_THINK_CASES for m in c["messages"]
     for k in ("content", "reasoning_content")]


def byte_level(split, specials, vocab=700, bos=None, corpus=None, added=()):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((corpus or CORPUS) * 3, trainer)
    # Ordinary added tokens (Qwen3's <think>, <tool_call>, …: `special: false` in its tokenizer.json).
    if added:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def metaspace(specials, bos, vocab=700, corpus=None):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    corpus = corpus or CORPUS
    alphabet = sorted({ch for line in corpus for ch in line} | set("▁"))
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(corpus * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


FAMILIES = {
    "llama3_1": dict(
        template="llama3_1.jinja",
        tokenizer=lambda: byte_level(LLAMA3_SPLIT, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                    "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"],
                                     bos="<|begin_of_text|>"),
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, add_bos=True,
        gen_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]),
    "qwen2_5": dict(
        template="qwen2_5.jinja",
        tokenizer=lambda: byte_level(QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False,
        gen_eos=["<|im_end|>", "<|endoftext|>"]),
    "mistral_v0_3": dict(
        template="mistral_v0_3.jinja",
        tokenizer=lambda: metaspace(["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                                     "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"], bos="<s>"),
        bos="<s>", eos="</s>", pad=None, add_bos=True, gen_eos=["</s>"]),
    "gemma": dict(
        template="gemma.jinja",
        tokenizer=lambda: metaspace(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], bos="<bos>"),
        bos="<bos>", eos="<eos>", pad="<pad>", add_bos=True, gen_eos=["<eos>", "<end_of_turn>"]),
    "phi3": dict(
        template="phi3.jinja",
        tokenizer=lambda: metaspace(["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>",
                                     "<|user|>"], bos="<s>"),
        bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", add_bos=False,
        gen_eos=["<|endoftext|>", "<|assistant|>", "<|end|>"]),
    # Issue #13. Qwen/Qwen3-0.6B: byte-level BPE, ChatML with <think> and <tool_call> as ordinary
    # added tokens.
    "qwen3": dict(
        template="qwen3.jinja", cases=CASES + REASONING_CASES + INLINE_THINK_CASES, masks=True,
        tokenizer=lambda: byte_level(QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                     corpus=REASONING_CORPUS,
                                     added=["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                                            "<think>", "</think>"]),
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False,
        gen_eos=["<|im_end|>", "<|endoftext|>"]),
    # google/gemma-3-1b-it: SentencePiece-style BPE, the system prompt folded into the first user turn.
    "gemma3": dict(
        template="gemma3.jinja", cases=CASES + REASONING_CASES,
        tokenizer=lambda: metaspace(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                                     "<start_of_image>"], bos="<bos>", corpus=REASONING_CORPUS),
        bos="<bos>", eos="<eos>", pad="<pad>", add_bos=True, gen_eos=["<eos>", "<end_of_turn>"]),
    # microsoft/phi-4: byte-level BPE (cl100k-like), <|im_start|>role<|im_sep|>…<|im_end|>.
    "phi4": dict(
        template="phi4.jinja", cases=CASES + REASONING_CASES,
        tokenizer=lambda: byte_level(LLAMA3_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>",
                                                    "<|dummy_85|>"], corpus=REASONING_CORPUS),
        bos="<|endoftext|>", eos="<|im_end|>", pad="<|dummy_85|>", add_bos=False,
        gen_eos=["<|im_end|>", "<|endoftext|>"]),
    # microsoft/Phi-4-mini-instruct: byte-level BPE, <|role|>…<|end|> without newlines, EOS at the end.
    "phi4_mini": dict(
        template="phi4_mini.jinja", cases=CASES + REASONING_CASES,
        tokenizer=lambda: byte_level(LLAMA3_SPLIT, ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>",
                                                    "<|user|>", "<|tool|>", "<|/tool|>", "<|tool_call|>",
                                                    "<|/tool_call|>", "<|tool_response|>"],
                                     corpus=REASONING_CORPUS),
        bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>", add_bos=False,
        gen_eos=["<|end|>", "<|endoftext|>"]),
}

# Sources of the templates in templates/ (the model's tokenizer_config.json `chat_template`):
#   qwen3.jinja      Qwen/Qwen3-0.6B, as llama.cpp keeps it in models/templates/Qwen-Qwen3-0.6B.jinja
#   gemma3.jinja     google/gemma-3-1b-it (the same template ships with every Gemma 3 instruct model)
#   phi4.jinja       microsoft/phi-4 (the current one, with a separate assistant header and
#                    add_generation_prompt)
#   phi4_mini.jinja  microsoft/Phi-4-mini-instruct

# Qwen3's assistant branch, and the same with `{% generation %}` around what tunelab trains. With
# ANSWERS a rendered reasoning block stays outside (`train_on: answers`); without, it is inside
# (`train_on: assistant`, what TRL's Qwen3 training template marks).
QWEN3_ASSISTANT = """        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}"""
QWEN3_ASSISTANT_TAGGED = """        {%- set think = loop.index0 > ns.last_query_index and (loop.last or (not loop.last and reasoning_content)) %}
        {%- set outside = think and reasoning_content and ANSWERS %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if outside %}
            {{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' }}
        {%- endif %}
        {%- generation %}
        {%- if think and not outside %}
            {{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' }}
        {%- endif %}
        {%- if think %}
            {{- content.lstrip('\\n') }}
        {%- else %}
            {{- content }}
        {%- endif %}
        {%- if message.tool_calls %}"""
QWEN3_END = """        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}"""
QWEN3_END_TAGGED = """        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- elif message.role == "tool" %}"""


def qwen3_tagged(template, answers):
    assert QWEN3_ASSISTANT in template and QWEN3_END in template
    tagged = template.replace(QWEN3_ASSISTANT, QWEN3_ASSISTANT_TAGGED.replace("ANSWERS", "true" if answers else "false"))
    return tagged.replace(QWEN3_END, QWEN3_END_TAGGED)


def ids_of(out):
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    return list(out)


def main():
    for family, spec in FAMILIES.items():
        d = OUT / family
        d.mkdir(parents=True, exist_ok=True)
        tok = spec["tokenizer"]()
        tok.save(str(d / "tokenizer.json"))
        template = (HERE / "templates" / spec["template"]).read_text()
        if template.endswith("\n"):
            template = template[:-1]
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": spec["bos"],
            "eos_token": spec["eos"],
            "pad_token": spec["pad"],
            "unk_token": "<unk>" if tok.token_to_id("<unk>") is not None else None,
            "add_bos_token": spec["add_bos"],
            "add_eos_token": False,
            "model_max_length": 4096,
            "chat_template": template,
        }
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        gen = {"eos_token_id": [tok.token_to_id(t) for t in spec["gen_eos"]]}
        if spec["bos"]:
            gen["bos_token_id"] = tok.token_to_id(spec["bos"])
        (d / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")

        hf = PreTrainedTokenizerFast.from_pretrained(str(d))
        cases = []
        for case in spec.get("cases", CASES):
            kwargs = dict(add_generation_prompt=case.get("add_generation_prompt", False))
            if "tools" in case:
                kwargs["tools"] = case["tools"]
            if "enable_thinking" in case:
                kwargs["enable_thinking"] = case["enable_thinking"]
            entry = {"name": case["name"], "messages": case["messages"], **kwargs}
            try:
                entry["text"] = hf.apply_chat_template(case["messages"], tokenize=False, **kwargs)
                entry["input_ids"] = ids_of(hf.apply_chat_template(case["messages"], tokenize=True, **kwargs))
            except Exception as e:  # the template raised: tunelab must raise the same message
                entry["error"] = str(e)
            if spec.get("masks") and "error" not in entry and not kwargs["add_generation_prompt"]:
                entry["assistant_masks"] = {}
                for policy, answers in (("assistant", False), ("answers", True)):
                    tagged = qwen3_tagged(template, answers)
                    text = hf.apply_chat_template(case["messages"], tokenize=False, chat_template=tagged, **kwargs)
                    assert text == entry["text"], (family, case["name"], policy)
                    out = hf.apply_chat_template(case["messages"], tokenize=True, return_dict=True,
                                                 return_assistant_tokens_mask=True, chat_template=tagged, **kwargs)
                    assert list(out["input_ids"]) == entry["input_ids"]
                    entry["assistant_masks"][policy] = list(out["assistant_masks"])
            cases.append(entry)
        # Plain text with the tokenizer's own special-token handling (BOS from the post-processor).
        plain = "Low rank adapters train two small matrices."
        encodings = {
            "text": plain,
            "with_special_tokens": hf(plain)["input_ids"],
            "without_special_tokens": hf(plain, add_special_tokens=False)["input_ids"],
        }
        (d / "cases.json").write_text(json.dumps({"family": family, "cases": cases, "encode": encodings},
                                                 indent=1, ensure_ascii=False) + "\n")
        print(family, "vocab", tok.get_vocab_size(), "cases", len(cases),
              "errors", sum(1 for c in cases if "error" in c))


if __name__ == "__main__":
    main()
