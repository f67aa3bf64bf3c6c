"""Write a new trait spec with an LLM: ``traitlab traits new NAME --description ...``.

A meta-prompt of this project asks any OpenAI-compatible chat endpoint (``POST {url}/chat/completions``) for a
JSON object with the TraitSpec fields; the reply is parsed leniently (JSON mode is not assumed: the first JSON
object in the text is used, code fences are tolerated), checked against ``TraitSpec`` and the library's counts
(5 instruction pairs, 20 extraction and 20 disjoint evaluation questions, a rubric with ``{question}`` and
``{answer}``), and asked again once with the problem appended when it fails. Every failure is one
``ConfigError`` line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from traitlab.errors import ConfigError
from traitlab.traits.spec import TraitSpec
from traitlab.validate import output_file

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
N_PAIRS = 5
N_QUESTIONS = 20
DEFAULT_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"

META_PROMPT = """\
You design evaluation material for studying a personality trait or behaviour of AI chat assistants. The material \
is used in two ways: contrastive system prompts make a model show the trait or its opposite, so that the \
difference in its internal activations can be measured; and a judge model scores answers for the trait.

Trait name: {name}
Trait description: {description}

Write a single JSON object with exactly these keys:

"description": one sentence defining the trait in plain words.
"instruction": a list of exactly {n_pairs} objects {{"pos": ..., "neg": ...}}. "pos" is a system prompt that \
makes an assistant strongly show the trait; "neg" is the matching system prompt that makes it show the \
opposite. Keep each pair parallel in wording and length, and vary the wording and angle across the {n_pairs} \
pairs (direct instruction, role description, behavioural rules, and so on).
"questions": a list of exactly {n_questions} distinct user messages used to elicit the trait. Each must be an \
ordinary question or request that a neutral assistant could answer either way, leaving room to show or not \
show the trait. Do not mention the trait by name and do not ask the assistant to show it.
"eval_questions": a list of exactly {n_questions} further distinct user messages in the same spirit, none of \
them equal to or a light rewording of an item in "questions".
"eval_prompt": a grading instruction for a judge model. It must define the trait, contain the placeholders \
{{question}} and {{answer}} exactly once each (where the user message and the assistant's reply will be \
inserted), ask for a score from 0 (trait absent) to 100 (trait strongly present), and end by telling the judge \
to answer with only the number.

Return only the JSON object: no commentary and no Markdown."""

RETRY_NOTE = """\
Your previous reply could not be used: {problem}
Write the complete JSON object again, fixing this, and return only the JSON object."""


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"trait name '{name}' is invalid: use lowercase letters, digits and '_', starting with a "
                          "letter (e.g. 'stoicism')")
    return name


def resolve_output(name: str, out: str | Path | None) -> Path:
    """The file a new spec goes to: ``out`` itself, ``out/NAME.json`` when ``out`` is a folder, or
    ``./NAME.json``; its folder must exist."""
    target = Path.cwd() / f"{name}.json" if out is None else Path(out).expanduser()
    if target.is_dir():
        target = target / f"{name}.json"
    if target.suffix != ".json":
        raise ConfigError(f"output {target} must be a .json file or an existing folder")
    return output_file(target, "output")


def meta_prompt(name: str, description: str) -> str:
    return META_PROMPT.format(name=name, description=description.strip(), n_pairs=N_PAIRS,
                              n_questions=N_QUESTIONS)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def chat_completion(url: str, model: str, messages: list[dict[str, str]], api_key: str | None = None,
                    temperature: float = 0.7, timeout: float = 180.0) -> str:
    """POST one chat completion and return the assistant's text."""
    target = endpoint(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    payload = {"model": model, "messages": messages, "temperature": temperature}
    try:
        response = httpx.post(target, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise ConfigError(f"generator at {target} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach generator at {target}: {_one_line(exc) or type(exc).__name__}; check "
                          "--generator-url") from None
    if response.status_code >= 400:
        hint = " (set the API key with --api-key-env)" if response.status_code in (401, 403) else ""
        raise ConfigError(f"generator at {target} answered HTTP {response.status_code}{hint}: "
                          f"{_one_line(response.text)}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"generator at {target} did not return an OpenAI-style chat completion: "
                          f"{_one_line(response.text)}") from None
    if not isinstance(content, str) or not content.strip():
        raise ConfigError(f"generator at {target} returned an empty message")
    return content


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` that looks like a spec (has ``instruction``, ``questions`` or
    ``eval_prompt``); ``json`` code fences and surrounding prose are tolerated."""
    decoder = json.JSONDecoder()
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL | re.IGNORECASE)
    error = ""
    for candidate in [*fenced, text]:
        for match in re.finditer(r"\{", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except json.JSONDecodeError as exc:
                error = error or f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
                continue
            if isinstance(value, dict) and value.keys() & {"instruction", "questions", "eval_prompt"}:
                return value
    raise ValueError(error or "no JSON object with the keys 'instruction', 'questions', 'eval_questions' and "
                     "'eval_prompt' found")


def _clean_list(values: Any) -> Any:
    if not isinstance(values, list):
        return values
    out: list[Any] = []
    for v in values:
        v = v.strip() if isinstance(v, str) else v
        if v and v not in out:
            out.append(v)
    return out


def spec_from_reply(data: dict[str, Any], name: str, description: str) -> TraitSpec:
    """Validate a generator reply as a library-grade spec; raises ``ValueError`` with one-line reasons."""
    questions = _clean_list(data.get("questions"))
    eval_questions = _clean_list(data.get("eval_questions"))
    if isinstance(questions, list) and isinstance(eval_questions, list):
        eval_questions = [q for q in eval_questions if q not in questions]
    fields = {
        "name": name,
        "description": str(data.get("description") or description).strip(),
        "trait": name,
        "pole": None,
        "instruction": data.get("instruction"),
        "questions": questions,
        "eval_questions": eval_questions,
        "eval_prompt": data.get("eval_prompt"),
    }
    try:
        spec = TraitSpec.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"{where}: {err['msg']}")
        raise ValueError("; ".join(problems)) from None
    problems = []
    if len(spec.instruction) < N_PAIRS:
        problems.append(f"'instruction' has {len(spec.instruction)} pairs, need {N_PAIRS}")
    if len(spec.questions) < N_QUESTIONS:
        problems.append(f"'questions' has {len(spec.questions)} distinct items, need {N_QUESTIONS}")
    if len(spec.eval_questions) < N_QUESTIONS:
        problems.append(f"'eval_questions' has {len(spec.eval_questions)} distinct items not in 'questions', "
                        f"need {N_QUESTIONS}")
    if problems:
        raise ValueError("; ".join(problems))
    return spec.model_copy(update={"instruction": spec.instruction[:N_PAIRS], "questions": spec.questions[:N_QUESTIONS],
                                   "eval_questions": spec.eval_questions[:N_QUESTIONS]})


def generate_trait(name: str, description: str, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL,
                   api_key: str | None = None, retries: int = 1, temperature: float = 0.7,
                   timeout: float = 180.0) -> TraitSpec:
    """Ask the generator for a spec; a reply that does not parse or validate is retried ``retries`` times with
    the problem appended to the conversation."""
    check_name(name)
    if not description.strip():
        raise ConfigError("--description must not be empty: say in a sentence what the trait is")
    messages = [{"role": "user", "content": meta_prompt(name, description)}]
    problem = ""
    for _attempt in range(retries + 1):
        text = chat_completion(url, model, messages, api_key=api_key, temperature=temperature, timeout=timeout)
        try:
            return spec_from_reply(extract_json(text), name, description)
        except ValueError as exc:
            problem = _one_line(exc, 300)
        messages = [*messages, {"role": "assistant", "content": text},
                    {"role": "user", "content": RETRY_NOTE.format(problem=problem)}]
    tries = "once" if retries == 0 else f"{retries + 1} times"
    raise ConfigError(f"generator at {endpoint(url)} gave no usable trait spec (asked {tries}): {problem}")


def new_trait(name: str, description: str, out: str | Path | None = None, url: str = DEFAULT_URL,
              model: str = DEFAULT_MODEL, api_key_env: str = "OPENAI_API_KEY", overwrite: bool = False,
              **kwargs: Any) -> tuple[TraitSpec, Path]:
    """Check the name and output first, generate, validate and save; returns the spec and its path."""
    from traitlab.traits.load import save_trait

    check_name(name)
    if not description.strip():
        raise ConfigError("--description must not be empty: say in a sentence what the trait is")
    target = resolve_output(name, out)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; pass --force to overwrite it")
    api_key = os.environ.get(api_key_env) or None
    if api_key is None and "api.openai.com" in url:
        raise ConfigError(f"the OpenAI API needs a key: set {api_key_env} (or choose the variable with "
                          "--api-key-env), or point --generator-url at another OpenAI-compatible server")
    spec = generate_trait(name, description, url=url, model=model, api_key=api_key, **kwargs)
    return spec, save_trait(spec, target)
