"""Locust load test of the HTTP timeline service (``fanout serve``), with the same workload model as ``fanout bench``.

Run it against a service (see the README, "HTTP service and Locust")::

    fanout serve --strategy push &
    locust -f bench/locustfile.py -H http://127.0.0.1:8000                 # web UI on http://127.0.0.1:8089
    locust -f bench/locustfile.py -H http://127.0.0.1:8000 --headless -u 20 -r 20 -t 20s \\
        --csv results/locust --html results/locust.html
    fanout locust --help                                                   # a wrapper for the common cases

Each Locust process fetches users with their follower counts from the service (``/users/sample``) at test start
and draws operations from :class:`bench.workload.Workload` (read/write mix, Zipf-like readers, authors by reach,
optional follow churn), seeded per worker. The celebrity spike (the most-followed accounts post a burst) fires at
``--spike-at`` seconds, or from the button on the ``/fanout`` page. Latency keeps sub-millisecond resolution
(:mod:`bench.locust.stats`); the web UI gains a "Fan-out" tab with the service's live metrics
(:mod:`bench.locust.webui`). With ``--csv PREFIX``, the master also writes ``PREFIX_hdr.csv`` (HdrHistogram
percentiles) and ``PREFIX_fanout.json`` (per-worker request counts, final service metrics).

Locust users are closed loop (each waits for its answer); the open-loop figures come from ``fanout bench``.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import gevent.pool
from locust import FastHttpUser, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner
from locust.user.wait_time import constant_throughput

from bench.bindings.operations import another_page, http_call
from bench.locust.service_client import ServiceClient, ServiceError
from bench.locust.stats import HdrStats, use_submillisecond_buckets
from bench.locust.webui import extend_web_ui
from bench.workload import (
    AUTHOR_RATE_MODELS,
    DEFAULT_READ_RATIO,
    MAX_MENTIONS,
    READ_KINDS,
    Depths,
    Mix,
    Op,
    Sizes,
    Workload,
    check_activity,
)
from targets.strategies.registry import STRATEGIES

log = logging.getLogger("fanout.locust")
use_submillisecond_buckets()

HDR = HdrStats()
#: This process's operation stream, built at test start from the service's users.
WORKLOAD: Workload | None = None


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    # parser.add_argument (not an argument group): only it understands include_in_web_ui.
    parser.add_argument(
        "--strategy",
        default="",
        choices=["", *STRATEGIES],
        include_in_web_ui=True,
        help=f"Strategy the service should run ({', '.join(STRATEGIES)}; informational: the service decides, and a "
        "mismatch is logged). Empty: whatever it runs.",
    )
    parser.add_argument(
        "--read-ratio", type=float, default=DEFAULT_READ_RATIO, include_in_web_ui=True, help="Fraction of reads."
    )
    parser.add_argument(
        "--churn-ratio", type=float, default=0.0, include_in_web_ui=True, help="Fraction of follows/unfollows."
    )
    parser.add_argument("--page-size", type=int, default=50, include_in_web_ui=True, help="Posts per timeline page.")
    parser.add_argument(
        "--user-timeline-ratio",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="Fraction of reads that read one account's own posts (GET /users/[id]/posts) instead of a home timeline.",
    )
    parser.add_argument(
        "--page-depth",
        default="1",
        include_in_web_ui=True,
        help="Pages per read, following next_before: N, MIN-MAX, or N:W,N:W (depth:weight), as in `fanout bench`.",
    )
    parser.add_argument(
        "--body-bytes",
        default="",
        include_in_web_ui=True,
        help="Post body size in bytes: N or MIN-MAX (seeded); empty: a short body, as in `fanout bench`.",
    )
    parser.add_argument(
        "--mentions",
        type=int,
        default=0,
        include_in_web_ui=True,
        help=f"Each post mentions 0..N users (@<id>, 0..{MAX_MENTIONS}); they get it in their home timelines too.",
    )
    parser.add_argument(
        "--author-rate-model",
        default="reach",
        choices=list(AUTHOR_RATE_MODELS),
        include_in_web_ui=True,
        help="Posting rate by reach, its inverse (celebrities post rarely), or independent of reach.",
    )
    parser.add_argument(
        "--dormant", type=float, default=0.0, include_in_web_ui=True, help="Share of users who do not read (0..1)."
    )
    parser.add_argument(
        "--returning",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="Share of the dormant users who come back, each within the first --returning-within operations.",
    )
    parser.add_argument(
        "--returning-within",
        type=int,
        default=10_000,
        include_in_web_ui=True,
        help="Operations (of each worker's stream) within which returning users come back.",
    )
    parser.add_argument(
        "--spike-at",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="Seconds after the start at which the celebrity spike fires (0: only from the /fanout button).",
    )
    parser.add_argument(
        "--spike-size", type=int, default=5, include_in_web_ui=True, help="Posts each spiking celebrity publishes."
    )
    parser.add_argument(
        "--spike-accounts", type=int, default=1, include_in_web_ui=True, help="How many most-followed accounts spike."
    )
    parser.add_argument(
        "--user-rate",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="Operations per second per Locust user (0: as fast as answers come).",
    )
    parser.add_argument(
        "--readers",
        default="followees",
        choices=["followees", "random"],
        include_in_web_ui=True,
        help="Who reads most (Zipf-like): the accounts that follow the most, or a seeded random order.",
    )
    parser.add_argument("--sample-users", type=int, default=10_000, help="Users to fetch from the service.")
    parser.add_argument("--workload-seed", type=int, default=1, help="Workload seed (each worker adds its index).")


def _options(environment: Environment) -> Any:
    return environment.parsed_options


def _client(environment: Environment) -> ServiceClient | None:
    return ServiceClient(environment.host) if environment.host else None


def _validate(options: Any) -> str | None:
    """A message naming the first bad custom argument, or None."""
    if not 0.0 <= options.read_ratio <= 1.0:
        return f"--read-ratio {options.read_ratio} is outside 0..1: pass a fraction such as 0.95"
    if not 1 <= options.page_size <= 1000:
        return f"--page-size {options.page_size} is outside 1..1000"
    if options.spike_size < 1 or options.spike_accounts < 1:
        return "--spike-size and --spike-accounts must be at least 1"
    try:
        check_activity(
            options.mentions, options.author_rate_model, options.dormant, options.returning, options.returning_within
        )
        Mix(options.read_ratio, options.churn_ratio, options.user_timeline_ratio)
        Sizes.parse(options.body_bytes)
        Depths.parse(options.page_depth)
    except ValueError as exc:
        return str(exc)
    return None


class Spike:
    """The celebrity spike: the most-followed accounts each publish a burst of posts at once."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.status: dict[str, Any] = {"status": "not fired"}
        self._timer: gevent.Greenlet | None = None
        self._running = False

    def schedule(self, at: float) -> None:
        """Fire ``at`` seconds from now (nothing when ``at`` is 0)."""
        self.cancel()
        if at > 0:
            self.status = {"status": f"scheduled at +{at:g} s"}
            self._timer = gevent.spawn_later(at, self.fire, None, None)

    def cancel(self) -> None:
        """Drop a scheduled spike that has not fired."""
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None

    def fire(self, accounts: int | None, size: int | None) -> dict[str, Any]:
        """Start the spike now (in the background); returns the status."""
        if self._running:
            return self.status
        options = _options(self.environment)
        accounts = accounts or options.spike_accounts
        size = size or options.spike_size
        client = _client(self.environment)
        if client is None:
            return {"status": "no host set"}
        try:
            top = client.sample(n=1, top=accounts).top
        except ServiceError as exc:
            self.status = {"status": f"failed: {exc}"}
            return self.status
        self._running = True
        self.status = {"status": f"firing: {len(top)} account(s) x {size} posts", "accounts": top, "size": size}
        gevent.spawn(self._burst, top, size)
        return self.status

    def _burst(self, top: list[tuple[int, int]], size: int) -> None:
        session = FastHttpSession(self.environment.host, self.environment.events.request, user=None)
        pool = gevent.pool.Pool(len(top) or 1)
        try:
            for account, _followers in top:
                for i in range(size):
                    call = http_call(Op("post", account, None, -1 - i), 0)  # negative seqs mark the spike's posts
                    pool.spawn(session.request, call.method, call.path, json=call.json, name=f"spike: {call.name}")
            pool.join()
        finally:
            self._running = False
            accounts = ", ".join(f"{a} ({f} followers)" for a, f in top)
            self.status = {"status": f"fired: {size} posts each by {accounts}", "accounts": top, "size": size}


SPIKE: Spike | None = None


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global SPIKE
    HDR.attach(environment)
    if isinstance(environment.runner, WorkerRunner):

        @events.quit.add_listener
        def _tally(exit_code: int, **_: Any) -> None:
            # The worker's own count, to check against what the master aggregated.
            log.info("worker %s recorded %d requests", environment.runner.worker_index, HDR.recorded)

        return
    SPIKE = Spike(environment)
    extend_web_ui(environment, HDR, lambda: _client(environment), lambda: SPIKE.status, SPIKE.fire)

    @events.quit.add_listener
    def _write_results(exit_code: int, **_: Any) -> None:
        prefix = getattr(_options(environment), "csv_prefix", None)
        if not prefix:
            return
        extra: dict[str, Any] = {"spike": SPIKE.status if SPIKE else None, "host": environment.host}
        client = _client(environment)
        if client is not None:
            try:
                extra["service"] = client.metrics()
            except ServiceError as exc:
                extra["service_error"] = str(exc)
        for path in HDR.write(prefix, extra):
            log.info("wrote %s", path)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global WORKLOAD
    options = _options(environment)
    problem = _validate(options)
    client = _client(environment)
    WORKLOAD = None
    if problem or client is None:
        _refuse(environment, problem or "no host: pass -H http://127.0.0.1:8000 (where `fanout serve` listens)")
        return
    is_worker = isinstance(environment.runner, WorkerRunner)
    try:
        if not is_worker:
            strategy = client.health()["strategy"]
            if options.strategy and options.strategy != strategy:
                log.warning("--strategy %s given, but the service runs %s", options.strategy, strategy)
            client.reset_metrics()
            if SPIKE is not None:
                SPIKE.schedule(options.spike_at)
        index = getattr(environment.runner, "worker_index", 0)
        # As in `fanout bench`: with a timed spike, the spiking accounts post only in the burst.
        top = options.spike_accounts if options.spike_at > 0 else 0
        sample = client.sample(n=options.sample_users, top=top, seed=options.workload_seed)
        WORKLOAD = Workload(
            sample.users,
            sample.followers,
            Mix(options.read_ratio, options.churn_ratio, options.user_timeline_ratio),
            seed=options.workload_seed + index,
            followee_counts=sample.followees if options.readers == "followees" else None,
            quiet_authors=[account for account, _ in sample.top],
            body_sizes=Sizes.parse(options.body_bytes),
            page_depths=Depths.parse(options.page_depth),
            max_mentions=options.mentions,
            author_rates=options.author_rate_model,
            dormant=options.dormant,
            returning=options.returning,
            horizon=options.returning_within,
        )
    except (ServiceError, ValueError) as exc:
        _refuse(environment, str(exc))


def _refuse(environment: Environment, message: str) -> None:
    """Log why the test cannot run and end it: quit when headless, stop (so the form can be fixed) in the web UI."""
    log.error("fanout locustfile: %s", message)
    environment.process_exit_code = 2
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(environment.runner.quit if _options(environment).headless else environment.runner.stop)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if SPIKE is not None:
        SPIKE.cancel()


class TimelineUser(FastHttpUser):
    """One simulated client: reads home timelines, posts, and (with churn) follows and unfollows."""

    def wait_time(self) -> float:
        rate = _options(self.environment).user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0.0

    @task
    def act(self) -> None:
        """The next operation of this process's workload."""
        if WORKLOAD is None:
            raise StopUser()
        self.perform(WORKLOAD.next_op())

    def perform(self, op: Op) -> None:
        """Send one operation to the service (the same requests the open-loop driver's HTTP binding sends)."""
        page_size = _options(self.environment).page_size
        if op.kind not in READ_KINDS:
            call = http_call(op, page_size)
            self.client.request(call.method, call.path, json=call.json, name=call.name)
            return
        before, read = None, 0
        while True:  # one request per page, each below the last post of the previous one
            call = http_call(op, page_size, before)
            response = self.client.request(call.method, call.path, name=call.name)
            read += 1
            page = response.json() if response.status_code == call.expected else {"posts": [], "next_before": None}
            before = page["next_before"]
            if not another_page(op, read, len(page["posts"]), before, page_size):
                return
