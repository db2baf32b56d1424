"""The table `ragchat eval DIR --answers` prints: the figures of ``answers.summarise`` with what each counts."""

from __future__ import annotations


def _fmt(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:6.3f}"


def _secs(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:5.2f} s"


def print_table(res: dict) -> None:
    print(f"{res['set']} ({res['split']}): {res['questions']} questions ({res['answerable']} answerable, "
          f"{res['unanswerable']} unanswerable) over {res['docs']} documents, "
          f"{'as one conversation' if res.get('conversation') else 'one chat each'}; {res['provider']} ({res['model']})")
    lines = [
        ("answer accuracy", res["accuracy"], f"of {res['answerable']} answerable ({res['with_answers']} by answers, "
                                             f"{res['with_reference']} by reference), as shown"),
        ("  model alone", res["model_accuracy"], "the model's words, without the quoted passage"),
        ("  after turn 1", res["later_turns_accuracy"], f"of {res['later_turns']} answerable asked later in a chat"),
        ("ROUGE-L recall, mean", res["rouge_l_recall"], f"of {res['with_reference']} with a reference"),
        ("refusal accuracy", res["refusal_accuracy"], f"of {res['unanswerable']} unanswerable"),
        ("  model alone", res["model_refusal_accuracy"], "the model refused"),
        ("false refusals", res["false_refusals"], f"of {res['answerable']} answerable"),
        ("  model alone", res["model_false_refusals"], "the model refused"),
        ("citation precision", res["citation_precision"], f"of {res['cited_sources']} cited sources"),
        ("a gold source cited", res["gold_cited"], f"of {res['with_qrels']} answerable with qrels"),
        ("a gold source retrieved", res["gold_retrieved"], f"of {res['with_qrels']} answerable with qrels"),
    ]
    for name, value, note in lines:
        print(f"  {name:<24}{_fmt(value)}   {note}")
    for name, key in (("sources shown", "sources_s"), ("first token", "first_token_s"), ("whole answer", "answer_s")):
        print(f"  {name:<24}p50 {_secs(res[key + '_p50'])}   p95 {_secs(res[key + '_p95'])}")
    for lang, g in (res.get("by_lang") or {}).items():
        print(f"  {lang:<8}{g['questions']:3d} questions: right {_fmt(g['accuracy'])}, model alone "
              f"{_fmt(g['model_accuracy'])}, refused {_fmt(g['refused'])}")
    print(f"  ingest {res['ingest_s']:.1f} s; warm-up question {res['warmup_s']:.1f} s (not timed above); "
          f"LLM errors {res['errors']}")
