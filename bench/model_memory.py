"""Peak memory (RSS) of a process that loads a bundled model and answers one question with it.

    for m in smollm2-135m qwen2.5-0.5b qwen2.5-1.5b; do .venv/bin/python bench/model_memory.py $m; done

One model per process, so each figure is that model's alone (plus Python, LangChain and the
OpenAI client: about 100 MB). The embedder and the web app come on top in the real app.
"""

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from ragchat.core.settings import LLMSettings  # noqa: E402
from ragchat.llm.providers import resolve_llm  # noqa: E402
from ragchat.llm.streaming import stream_text  # noqa: E402

llm = resolve_llm(LLMSettings(provider="llamacpp", builtin_model=sys.argv[1], max_answer_tokens=32))
"".join(stream_text(llm, [SystemMessage("Answer shortly."), HumanMessage("What is the capital of France? " * 20)], 120))
print(sys.argv[1], round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "MB peak RSS")
