"""Conversations: which questions lean on the previous one, what of the history the model sees, and
the loop stop, as pure functions; then through the real engine (Chroma, the bundled embedder, the
built-in model): an unrelated question after a refusal is searched as itself."""

import pytest

from ragchat.answer.guards import repeated_tail
from ragchat.answer.replies import NOT_FOUND, NOT_FOUND_ZH
from ragchat.answer.followup import clean_answer, depends_on_previous, history_for_prompt


@pytest.mark.parametrize("question", [
    "and its capacity?", "What about 2023?", "How fast is it?", "What does that mean?", "Why?",
    "Which of them is cheaper?", "How much does it cost per hour?", "那 2021 年呢？", "它的容量是多少？", "还有其他的吗", "该公司的营收是多少？",
    "How does it handle row and column order?",  # "it" points back, however long the question
])
def test_follow_ups_lean_on_the_previous_question(question):
    assert depends_on_previous(question)


@pytest.mark.parametrize("question", [
    "How does the method handle temporal consistency between frames?",
    "What frame rate does the stereo matching method reach?",
    "Which method that reaches 30 fps is the most accurate?",
    "What does this paper propose for table structure recognition?",
    "高测现在的电力采购单价降到多少了？", "这篇论文提出的立体匹配方法的运行速度是多少？",
    "其他公司的营收是多少？", "应该如何安装软件包？", "因此公司的毛利率是多少？",
    "How many passages did they end up with after splitting Wikipedia for DPR?",  # a generic "they"
    "How did Jessica Jones get her powers in the show?",  # "her" points inside the question
    "Which attention bias hurts TableFormer the most when it's removed?",
])
def test_new_questions_stand_alone(question):
    assert not depends_on_previous(question)


def test_history_for_prompt_drops_refusals_quotes_and_markers():
    history = [
        ("user", "What frame rate does it reach?"), ("assistant", "It runs at 30 fps [1].\n\n> It runs at 30 fps on a GPU. [1]"),
        ("user", "How is temporal consistency kept?"), ("assistant", NOT_FOUND),
        ("user", "高测的单价是多少？"), ("assistant", "资料中没有找到答案。"),
        ("user", "Who wrote it?"), ("assistant", "The documents do not say who wrote it."),
    ]
    assert history_for_prompt(history, 3) == [("user", "What frame rate does it reach?"), ("assistant", "It runs at 30 fps.")]
    assert history_for_prompt(history, 0) == []
    assert clean_answer("A [1], B【2】.\n> quoted [1]") == "A, B."


def test_repeated_tail_stops_loops_but_not_tables_or_numbers():
    text = "The sizes are [57.9 24 5.55] [57.9 24 5.55] [57.9 24 5.55] "
    cut = repeated_tail(text)
    assert cut and text[:-cut] == "The sizes are [57.9 24 5.55] "
    assert repeated_tail("| --- | --- | --- | --- | --- | --- | --- |") == 0
    assert repeated_tail("Revenue rose from 1,000,000 to 2,000,000 yuan.") == 0
    assert repeated_tail("好的" * 20)


ALPHA = "The zebrafish heart regenerates after injury. Cardiomyocytes proliferate near the wound."
BETA = "Quantum annealing solves optimisation problems. The annealer uses superconducting qubits."


@pytest.fixture
def engine(settings, tmp_path):
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect

    eng = Engine(settings)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(ALPHA, encoding="utf-8")
    (docs / "b.txt").write_text(BETA, encoding="utf-8")
    list(eng.ingestor.ingest(collect([docs]), "default"))
    yield eng
    eng.close()


def test_a_new_question_after_a_refusal_is_searched_as_itself(engine):
    history = [("user", "Which bakery sells croissants in Lyon?"), ("assistant", NOT_FOUND)]
    answer = list(engine.chat.stream("What does the annealer use?", history))[-1].answer
    assert answer.question == "What does the annealer use?"
    assert answer.retrieved and answer.retrieved[0].source == "b.txt"
    assert answer.text and answer.text != NOT_FOUND
    messages = engine.chat.prompt("What does the annealer use?", history, answer.retrieved, "system")
    assert all(NOT_FOUND not in str(m.content) for m in messages)


def test_a_follow_up_searches_with_both_and_the_fixed_replies_follow_the_language(engine):
    history = [("user", "Tell me about quantum annealing"), ("assistant", "It solves optimisation problems [1].")]
    answer = list(engine.chat.stream("What hardware does it use?", history))[-1].answer
    assert "quantum annealing" in answer.question.lower()
    assert answer.retrieved[0].source == "b.txt"
    assert list(engine.chat.stream("里昂哪家面包店卖羊角面包？"))[-1].answer.text == NOT_FOUND_ZH
