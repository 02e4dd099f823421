"""A realistic event mix, generated fast as ready-to-send Kafka records.

Tenants get Zipf-distributed traffic; each tenant uses a few models (20 in all, from the
shipped price table) and agents, with sessions of about 15 calls. Event types come in the
proportions of a typical agent platform: 60 % llm_call, 15 % tool_call, 10 % rag_retrieval,
8 % evaluation, 4 % guardrail, 3 % feedback. An llm_call record is about 600 bytes with the
ids and extra attributes real SDKs send; half carry their own ``cost_usd``. Values are healthy
(error rate ~2 %, latency p95 ~2.2 s, output/input tokens ~0.5, good scores), so quality rules
stay quiet for almost every tenant.

The generator knows what it wrote: the number of ``llm_call`` events and their exact total
cost in pico-USD (the producer's ``cost_usd`` where given, the price table otherwise), which
the benchmark compares with what llmtel stored.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.pricing import PriceTable

# (model, weight): a plausible production mix, cheap models most used.
MODEL_MIX: tuple[tuple[str, float], ...] = (
    ("gpt-4o-mini", 18),
    ("gpt-4.1-mini", 8),
    ("gpt-4o", 7),
    ("gemini-2.5-flash", 8),
    ("claude-sonnet-4-5", 7),
    ("claude-haiku-4-5", 6),
    ("gpt-5-mini", 6),
    ("gpt-4.1", 4),
    ("gemini-2.0-flash", 4),
    ("o4-mini", 3),
    ("mistral-small", 3),
    ("llama-3.3-70b-instruct", 3),
    ("deepseek-chat", 3),
    ("gpt-5", 2),
    ("gemini-2.5-pro", 2),
    ("claude-3-5-haiku", 2),
    ("llama3.1:8b", 2),
    ("mistral-large", 1),
    ("command-r", 1),
    ("claude-opus-4-1", 0.5),
)
N_MODELS = 20

AGENTS = (
    "support-bot",
    "sales-assistant",
    "code-reviewer",
    "doc-search",
    "triage-agent",
    "summarizer",
    "sql-copilot",
    "onboarding-guide",
)
TOOLS = (
    "search_orders",
    "get_customer",
    "create_ticket",
    "lookup_invoice",
    "run_sql",
    "send_email",
    "fetch_url",
    "vector_search",
    "calendar_lookup",
    "update_crm",
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
FINISH = ("stop", "stop", "stop", "stop", "stop", "stop", "tool_calls", "tool_calls", "length")
COMMENTS = ("helpful", "great answer", "too long", "wrong order number", "thanks!", "not useful")

# cumulative shares of event types
TYPE_CUM = (0.60, 0.75, 0.85, 0.93, 0.97, 1.0)
LLM, TOOL, RAG, EVAL, GUARD, FEEDBACK = range(6)

PICO_PER_1E8 = 10_000  # producers round their cost_usd to 1e-8 USD


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def pick_models(prices: PriceTable) -> list[tuple[str, float]]:
    """The 20 models of the mix that the shipped table prices (others filled from the table)."""
    chosen = [(m, w) for m, w in MODEL_MIX if prices.lookup(m) is not None]
    names = {m for m, _ in chosen}
    for name, price in sorted(prices.models.items()):
        if len(chosen) >= N_MODELS:
            break
        if name not in names and price.provider != "local":
            chosen.append((name, 1.0))
            names.add(name)
    return chosen[:N_MODELS]


@dataclass
class Records:
    """Generated records and what the generator knows about them."""

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    llm_calls: int = 0
    cost_pico: int = 0
    sizes: dict[str, list[int]] = field(default_factory=dict)  # event type -> [count, bytes]

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class _Tenant:
    name: str
    key: bytes
    models: list[int]  # indexes into Mix.llm_pools
    model_cum: list[float]
    agents: tuple[str, ...]
    sessions: int
    users: int
    index: int


def _mix64(x: int) -> int:
    return (x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64


POOL = 1024
"""Pre-built event bodies per model and per event type (ids, times and tenants vary per event)."""


class Mix:
    """Generates the event mix for a set of tenants with given traffic weights."""

    def __init__(
        self,
        tenants: Sequence[str],
        weights: Sequence[float],
        *,
        prices: PriceTable,
        expected_events: int,
        seed: int = 1,
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.prices = prices
        self.models = pick_models(prices)
        self.llm_pools = [self._llm_pool(m) for m, _ in self.models]
        self.pools = {
            TOOL: self._pool(self._tool_body),
            RAG: self._pool(self._rag_body),
            EVAL: self._pool(self._eval_body),
            GUARD: self._pool(self._guard_body),
            FEEDBACK: self._pool(self._feedback_body),
        }
        self.tenant_cum = list(itertools.accumulate(weights))
        total = self.tenant_cum[-1]
        self.tenants: list[_Tenant] = []
        model_weights = [w for _, w in self.models]
        for index, (name, weight) in enumerate(zip(tenants, weights, strict=True)):
            picked: dict[int, float] = {}
            k = rng.randint(2, 4)
            while len(picked) < k:
                mi = rng.choices(range(len(self.models)), weights=model_weights)[0]
                picked[mi] = model_weights[mi]
            calls = expected_events * weight / total * TYPE_CUM[0]
            sessions = max(3, round(calls / 15))
            self.tenants.append(
                _Tenant(
                    name=name,
                    key=name.encode(),
                    models=list(picked),
                    model_cum=list(itertools.accumulate(picked.values())),
                    agents=tuple(rng.sample(AGENTS, rng.randint(1, 4))),
                    sessions=sessions,
                    users=max(2, sessions // 3),
                    index=index,
                )
            )
        self._seconds: dict[int, str] = {}

    # -- pools of bodies ---------------------------------------------------------------
    def _pool(self, make) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        return [make() for _ in range(POOL)]

    def _llm_pool(self, model: str) -> list[tuple[str, int]]:
        """(body, cost in pico-USD) variants of one model's calls."""
        rng = self.rng
        rand = rng.random
        price = self.prices.lookup(model)
        provider = price.provider if price else ""
        pool = []
        for _ in range(POOL):
            inp = int(rng.lognormvariate(7.1, 0.8)) + 20  # median ~1,200 tokens
            cached = int(inp * (0.2 + 0.6 * rand())) if rand() < 0.3 else 0
            outp = int(inp * (0.3 + 0.5 * rand())) + 5  # output/input ~0.55
            cost = price.cost(inp, cached, outp) if price is not None else 0
            r = rand()
            if r < 0.5:  # half the producers send their own cost, rounded to 1e-8 USD
                c8 = (cost + PICO_PER_1E8 // 2) // PICO_PER_1E8
                cost = c8 * PICO_PER_1E8
                amount = f"{c8 // 10**8}.{c8 % 10**8:08d}"
                cost_field = f'"cost_usd":{amount},' if r < 0.35 else f'"cost_usd":"{amount}",'
            else:
                cost_field = ""
            r = rand()
            status = (
                "ok"
                if r < 0.98
                else "error"
                if r < 0.99
                else "timeout"
                if r < 0.995
                else "provider_error"
            )
            r = rand()
            json_valid = "true" if r < 0.55 else "false" if r < 0.57 else "null"
            r = rand()
            cache = "none" if r < 0.8 else "exact" if r < 0.9 else "semantic"
            body = (
                f'"event_type":"llm_call","model":"{model}","provider":"{provider}",'
                f'"input_tokens":{inp},"cached_input_tokens":{cached},"output_tokens":{outp},'
                f"{cost_field}"
                f'"latency_ms":{rng.lognormvariate(6.8, 0.55):.1f},"status":"{status}",'
                f'"json_valid":{json_valid},"cache":"{cache}","abstained":false,'
                f'"finish_reason":"{rng.choice(FINISH)}","environment":"production",'
                f'"region":"{rng.choice(REGIONS)}"}}'
            )
            pool.append((body, cost))
        return pool

    def _tool_body(self) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        status = "ok" if r < 0.97 else "error" if r < 0.999 else "blocked_injection"
        return "tool_call", (
            f'"event_type":"tool_call","tool_name":"{rng.choice(TOOLS)}","status":"{status}",'
            f'"latency_ms":{rng.lognormvariate(4.8, 0.7):.1f},"environment":"production"}}'
        )

    def _rag_body(self) -> tuple[str, str]:
        rng = self.rng
        return "rag_retrieval", (
            f'"event_type":"rag_retrieval","chunks_retrieved":{rng.randint(3, 20)},'
            f'"top_score":{rng.uniform(0.55, 0.95):.4f},"latency_ms":{rng.lognormvariate(3.6, 0.5):.1f},'
            f'"index":"kb-{rng.randint(0, 6)}","environment":"production"}}'
        )

    def _eval_body(self) -> tuple[str, str]:
        rng = self.rng
        rand = rng.random
        r = rand()
        if r < 0.4:
            name, score = "faithfulness", 0.75 + 0.25 * rand() ** 0.5
        elif r < 0.65:  # 1 means hallucinated: about 5 % are
            name, score = "hallucination", (0.6 + 0.4 * rand() if rand() < 0.05 else 0.1 * rand())
        elif r < 0.85:
            name, score = "groundedness", 0.7 + 0.3 * rand()
        else:
            name, score = "rag_recall_at_5", 0.6 + 0.4 * rand()
        return "evaluation", (
            f'"event_type":"evaluation","name":"{name}","score":{score:.4f},'
            f'"evaluator":"llm-judge-v2"}}'
        )

    def _guard_body(self) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        kind = "prompt_injection" if r < 0.4 else "pii" if r < 0.75 else "toxicity"
        r = rng.random()
        action = "allowed" if r < 0.88 else "flagged" if r < 0.98 else "blocked"
        return "guardrail", f'"event_type":"guardrail","kind":"{kind}","action":"{action}"}}'

    def _feedback_body(self) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        score = 5 if r < 0.45 else 4 if r < 0.8 else 3 if r < 0.9 else 2 if r < 0.95 else 1
        comment = f',"comment":"{rng.choice(COMMENTS)}"' if rng.random() < 0.3 else ""
        return "feedback", f'"event_type":"feedback","score":{score}{comment}}}'

    # -- generation --------------------------------------------------------------------
    def _ts(self, t: float) -> str:
        sec = int(t)
        prefix = self._seconds.get(sec)
        if prefix is None:
            if len(self._seconds) > 100_000:
                self._seconds.clear()
            prefix = self._seconds[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{prefix}.{int((t - sec) * 1000):03d}Z"

    def generate(
        self,
        n: int,
        t_start: float,
        t_end: float,
        *,
        out: Records | None = None,
        tenant: _Tenant | None = None,
    ) -> Records:
        """``n`` records with event times spread evenly from ``t_start`` to ``t_end`` (in
        stream order, each up to 2 s late, never in the future), appended to ``out``."""
        out = out if out is not None else Records()
        rng = self.rng
        rand = rng.random
        keys, values, sizes = out.keys, out.values, out.sizes
        tenants, tenant_cum = self.tenants, self.tenant_cum
        total_weight = tenant_cum[-1]
        llm_pools, pools = self.llm_pools, self.pools
        bisect_left = bisect.bisect_left
        ts_of = self._ts
        ids = rng.randbytes(n * 40).hex()  # event_id, trace_id and span_id of each event
        step = (t_end - t_start) / n if n else 0.0
        now = time.time()
        llm_calls = 0
        cost_total = 0
        counts = dict.fromkeys(
            ("llm_call", *(kind for kind, _ in (p[0] for p in pools.values()))), 0
        )
        nbytes = dict.fromkeys(counts, 0)
        for i in range(n):
            t = tenant or tenants[bisect_left(tenant_cum, rand() * total_weight)]
            ts = min(now, t_start + i * step) - rand() * 2.0
            j = i * 80
            sidx = int(rand() * t.sessions)
            head = (
                f'{{"event_id":"{ids[j : j + 32]}","timestamp":"{ts_of(ts)}",'
                f'"tenant_id":"{t.name}","trace_id":"{ids[j + 32 : j + 64]}",'
                f'"span_id":"{ids[j + 64 : j + 80]}",'
                f'"session_id":"sess_{_mix64(t.index * 1_000_003 + sidx):016x}",'
                f'"agent_id":"{t.agents[int(rand() * len(t.agents))]}",'
                f'"user_id":"user_{_mix64(t.index * 7919 + sidx % t.users) >> 24:010x}",'
            )
            r = rand()
            if r < TYPE_CUM[0]:
                cum = t.model_cum
                model = t.models[bisect_left(cum, rand() * cum[-1])]
                body, cost = llm_pools[model][int(rand() * POOL)]
                value = (head + body).encode()
                llm_calls += 1
                cost_total += cost
                kind = "llm_call"
            else:
                kind, body = pools[bisect_left(TYPE_CUM, r)][int(rand() * POOL)]
                value = (head + body).encode()
            keys.append(t.key)
            values.append(value)
            counts[kind] += 1
            nbytes[kind] += len(value)
        for kind, count in counts.items():
            s = sizes.setdefault(kind, [0, 0])
            s[0] += count
            s[1] += nbytes[kind]
        out.llm_calls += llm_calls
        out.cost_pico += cost_total
        return out


def batched(keys: list[bytes], values: list[bytes], size: int = 100, window: int = 20_000):
    """(key, JSON array) records of up to ``size`` events of one tenant, grouped within
    consecutive windows of ``window`` events (what an SDK buffering per tenant sends)."""
    for start in range(0, len(values), window):
        groups: dict[bytes, list[bytes]] = {}
        for key, value in zip(
            keys[start : start + window], values[start : start + window], strict=True
        ):
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(value)
            if len(group) == size:
                yield key, b"[" + b",".join(group) + b"]"
                groups[key] = []
        for key, group in groups.items():
            if group:
                yield key, b"[" + b",".join(group) + b"]"
