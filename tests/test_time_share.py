"""Who steps next across models: inline completion first, and a chat streaming on another model
keeps its guaranteed share of the worker's time however much a completion's steps cost.
Fake runners with set step costs, charged as the worker charges real ones: counted in steps."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Priority
from sidecar.engine.scheduler import SHARE_WEIGHTS, Scheduler


@dataclass(eq=False)
class FakeRunner:
    name: str
    priority: Priority
    cost_s: float  # what one step costs
    busy: bool = True
    steps: int = 0

    def urgency(self) -> Priority | None:
        return self.priority if self.busy else None

    def step(self) -> None:
        self.steps += 1


def run(scheduler: Scheduler, runners: list[FakeRunner], ticks: int) -> list[str]:
    order = []
    for _ in range(ticks):
        for runner in scheduler.pick(runners):
            runner.step()
            scheduler.charge(runner, runner.cost_s)
            order.append(runner.name)
    return order


def test_a_chat_keeps_its_share_while_costly_completion_steps_run() -> None:
    """A coder prefill chunk costs 20 of the chat model's decode steps; the chat still gets its
    fifth of the time: about 20 / 4 = 5 decode steps per completion step."""
    scheduler = Scheduler()
    completion = FakeRunner("completion", Priority.COMPLETION, cost_s=1.0)
    chat = FakeRunner("chat", Priority.CHAT, cost_s=0.05)
    run(scheduler, [completion, chat], 600)
    time_completion = completion.steps * completion.cost_s
    time_chat = chat.steps * chat.cost_s
    share = SHARE_WEIGHTS[Priority.CHAT] / (
        SHARE_WEIGHTS[Priority.CHAT] + SHARE_WEIGHTS[Priority.COMPLETION]
    )
    assert abs(time_chat / (time_chat + time_completion) - share) < 0.02
    assert chat.steps >= 4 * completion.steps  # counted in steps, not 1 in 4 ticks


def test_a_completion_that_arrives_goes_first_and_keeps_most_of_the_time() -> None:
    """The chat has streamed alone for a while: a keystroke's completion steps next, and the
    chat does not get to spend what it used before."""
    scheduler = Scheduler()
    completion = FakeRunner("completion", Priority.COMPLETION, cost_s=0.15, busy=False)
    chat = FakeRunner("chat", Priority.CHAT, cost_s=0.05)
    run(scheduler, [completion, chat], 100)
    completion.busy = True
    order = run(scheduler, [completion, chat], 50)
    assert order[0] == "completion"
    spent = completion.steps * completion.cost_s
    assert spent / (spent + order.count("chat") * chat.cost_s) > 0.75


def test_a_runner_idle_for_a_while_banks_no_credit() -> None:
    """A chat model that was idle while another chat ran does not then take all the time."""
    scheduler = Scheduler()
    first = FakeRunner("first", Priority.CHAT, cost_s=0.05)
    second = FakeRunner("second", Priority.CHAT, cost_s=0.05, busy=False)
    run(scheduler, [first, second], 100)
    second.busy = True
    order = run(scheduler, [first, second], 20)
    assert 8 <= order.count("first") <= 12  # taking turns from the start


def test_equal_classes_share_time_not_steps() -> None:
    """Two chats on two models: a model whose steps cost 3x gets a third of the steps."""
    scheduler = Scheduler()
    big = FakeRunner("big", Priority.CHAT, cost_s=0.15)
    small = FakeRunner("small", Priority.CHAT, cost_s=0.05)
    run(scheduler, [big, small], 400)
    assert abs(big.steps * big.cost_s - small.steps * small.cost_s) <= big.cost_s


def test_no_work_no_step() -> None:
    scheduler = Scheduler()
    idle = FakeRunner("idle", Priority.CHAT, cost_s=0.05, busy=False)
    assert scheduler.pick([idle]) == []


def test_the_completion_share_setting_moves_the_chats_share(settings: Settings) -> None:
    """A user who chats more than they type sets `completion_share` 2
    (`MLX_SIDECAR_COMPLETION_SHARE=2`): the engine's scheduler gives the chat a third of the
    time while both have work, not the default fifth."""
    shares = {}
    for value in (4.0, 2.0):
        scheduler = Engine(settings.model_copy(update={"completion_share": value})).worker.scheduler
        completion = FakeRunner("completion", Priority.COMPLETION, cost_s=0.2)
        chat = FakeRunner("chat", Priority.CHAT, cost_s=0.05)
        run(scheduler, [completion, chat], 600)
        chat_s = chat.steps * chat.cost_s
        shares[value] = chat_s / (chat_s + completion.steps * completion.cost_s)
    assert abs(shares[4.0] - 1 / 5) < 0.02 and abs(shares[2.0] - 1 / 3) < 0.02, shares


def test_a_completion_after_a_pause_runs_its_lead_alone_then_the_chat_steps() -> None:
    """The chat streamed while the user paused: the next completion runs its first
    `COMPLETION_LEAD_S` of steps (0.5 s: four coder steps of 0.15 s) with no chat step between,
    as if alone, and then the chat's share resumes."""
    scheduler = Scheduler()
    completion = FakeRunner("completion", Priority.COMPLETION, cost_s=0.15, busy=False)
    chat = FakeRunner("chat", Priority.CHAT, cost_s=0.05)
    run(scheduler, [completion, chat], 30)  # 1.5 s of chat
    completion.busy = True
    order = run(scheduler, [completion, chat], 40)
    assert order[:4] == ["completion"] * 4  # 0.6 s >= the lead
    assert "chat" in order[4:6]  # then the chat steps again: a gap of one step past the lead


def test_typing_that_keeps_coming_back_earns_no_lead_the_chat_did_not_give() -> None:
    """Completions that end and start again at once (keystroke after keystroke) get a lead only
    as long as what the chat ran in between: the chat keeps its fifth of the time."""
    scheduler = Scheduler()
    completion = FakeRunner("completion", Priority.COMPLETION, cost_s=0.15)
    chat = FakeRunner("chat", Priority.CHAT, cost_s=0.05)
    for _ in range(100):  # busy for 3 ticks, then idle for 1
        run(scheduler, [completion, chat], 3)
        completion.busy = False
        run(scheduler, [completion, chat], 1)
        completion.busy = True
    chat_s = chat.steps * chat.cost_s
    share = chat_s / (chat_s + completion.steps * completion.cost_s)
    assert share >= 0.18, share  # a fresh 0.5 s lead each time would leave it ~0.1
