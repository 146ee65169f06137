"""The stack files render with `docker stack config` (no engine needed) and say what the
deployment promises: rolling updates that roll back by themselves, healthchecks without
curl, a stop grace period that covers the drain, hardened containers, the right networks;
the override for hosts without IPVS changes only what it must; the whole shop as one stack
runs every service exactly as its own stack does; they are all written by `make stacks`
from stacks/definition.yml; and only the Docker API proxies mount the engine's socket.

One module, longer than most: the files are checked against each other (the one stack
against the per-service stacks, the no-IPVS variants against the plain ones, the proxy with
its consumer), with one rendering fixture."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.make import NO_HOST_CONFIG

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
ALIASES = {"prod": "prod.api", "coupon": "coupon.api"}
ENV = {"SHOP_NAMESPACE": "acme", "IMG_TAG": "7", "REPLICAS": "3", "EDGE_PORT": "18123"}

docker = pytest.mark.docker


def seconds(value: str) -> float:
    """A compose duration (e.g. "1m30s", "10s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.fixture(scope="module")
def render(stack_config_client: str) -> Any:
    """Render stack files as `docker stack deploy` would read them, with ENV interpolated."""

    def run(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        args = [stack_config_client, "stack", "config"]
        for name in files:
            args += ["-c", str(STACKS / name)]
        variables = ENV if env is None else env
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=60, env={**_base_env(), **variables}
        )
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)

    return run


def _base_env() -> dict[str, str]:
    # Only what the client needs: a SHOP_* or IMG_TAG from the caller's shell must not leak in.
    keep = ("PATH", "HOME", "DOCKER_CONFIG")
    return {k: v for k, v in os.environ.items() if k in keep}


def app(config: dict[str, Any]) -> dict[str, Any]:
    return config["services"]["app"]


@docker
@pytest.mark.parametrize("service", ["prod", "coupon", "front"])
def test_service_stack_renders_with_its_promises(render: Any, service: str) -> None:
    """Each service stack: image, replicas, start-first update with auto rollback and a
    monitor window long enough for the healthcheck to fail, limits, hardening."""
    spec = app(render(f"{service}.yml"))
    assert spec["image"] == f"acme/{service}-service:7"
    deploy = spec["deploy"]
    assert deploy["replicas"] == 3
    update = deploy["update_config"]
    assert update["parallelism"] == 1
    assert update["order"] == "start-first"
    assert update["failure_action"] == "rollback"
    health = spec["healthcheck"]
    assert "curl" not in " ".join(health["test"])
    assert health["test"][0] == "CMD"
    must_cover = seconds(health["start_period"]) + seconds(health["interval"]) * health["retries"]
    assert seconds(update["monitor"]) >= must_cover
    assert seconds(health["timeout"]) < seconds(health["interval"])
    rollback = deploy["rollback_config"]
    assert rollback["order"] == "start-first"
    assert seconds(rollback["monitor"]) >= must_cover
    assert deploy["resources"]["limits"]["memory"] == str(200 * 1024 * 1024)
    assert deploy["resources"]["reservations"]["memory"] == str(100 * 1024 * 1024)
    # SIGTERM starts the drain, then uvicorn's graceful shutdown; only then SIGKILL.
    env = spec["environment"]
    budget = float(env["SHOP_DRAIN_SECONDS"]) + float(env["SHOP_GRACEFUL_TIMEOUT_SECONDS"])
    grace = seconds(spec["stop_grace_period"])
    assert budget + 2 <= grace < 60
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    uid, _, gid = spec["user"].partition(":")
    assert int(uid) >= 1000
    assert int(gid) >= 1000
    assert {(v["type"], v["target"]) for v in spec["volumes"]} == {("tmpfs", "/tmp")}
    assert "endpoint_mode" not in deploy  # users keep swarm's VIP


@docker
@pytest.mark.parametrize("service", ["prod", "coupon"])
def test_api_stacks_join_backend_with_their_alias(render: Any, service: str) -> None:
    """prod and coupon are reachable as prod.api / coupon.api on the external `backend`."""
    config = render(f"{service}.yml")
    assert app(config)["networks"] == {"backend": {"aliases": [ALIASES[service]]}}
    assert config["networks"]["backend"] == {"name": "backend", "external": True}
    assert "ports" not in app(config)


@docker
def test_front_publishes_80_and_reaches_the_apis(render: Any) -> None:
    """The front publishes 80:8080 through the routing mesh, joins `backend` (where the
    aliases live) and `frontend`, and calls the APIs by their aliases."""
    config = render("front.yml")
    spec = app(config)
    assert spec["ports"] == [
        {"mode": "ingress", "target": 8080, "published": 80, "protocol": "tcp"}
    ]
    assert set(spec["networks"]) == {"backend", "frontend"}
    assert config["networks"]["backend"] == {"name": "backend", "external": True}
    assert config["networks"]["frontend"] == {"name": "frontend", "external": True}
    assert spec["environment"]["SHOP_PROD_API_URL"] == "http://prod.api:3001"
    assert spec["environment"]["SHOP_COUPON_API_URL"] == "http://coupon.api:3002"


@docker
def test_defaults_without_environment(render: Any) -> None:
    """With no variables set: namespace shop, tag latest, two replicas."""
    spec = app(render("front.yml", env={}))
    assert spec["image"] == "shop/front-service:latest"
    assert spec["deploy"]["replicas"] == 2


@docker
@pytest.mark.parametrize("service", ["prod", "coupon"])
def test_no_ipvs_override_only_switches_to_dnsrr(render: Any, service: str) -> None:
    """With the override, the API stacks are the same apart from endpoint_mode dnsrr."""
    plain = render(f"{service}.yml")
    overridden = render(f"{service}.yml", "no-ipvs.yml")
    assert app(overridden)["deploy"].pop("endpoint_mode") == "dnsrr"
    assert overridden == plain


@docker
def test_front_for_hosts_without_ipvs_is_front_without_ingress(render: Any) -> None:
    """front.no-ipvs.yml is front.yml with dnsrr and without the ingress port. (An override
    cannot remove a port, and swarm rejects dnsrr with an ingress port.)"""
    plain = render("front.yml")
    no_ipvs = render("front.no-ipvs.yml")
    assert app(no_ipvs)["deploy"].pop("endpoint_mode") == "dnsrr"
    assert "ports" not in app(no_ipvs)
    del app(plain)["ports"]
    assert no_ipvs == plain
    # Why the front needs its own file: the override keeps the ingress port.
    assert app(render("front.yml", "no-ipvs.yml"))["ports"][0]["mode"] == "ingress"


@docker
def test_edge_is_published_in_host_mode_with_its_config(render: Any) -> None:
    """The edge publishes EDGE_PORT in host mode (no routing mesh), one task per node, on
    `frontend` only (it reaches the front, not the APIs), with haproxy.cfg as a config."""
    config = render("edge.yml")
    spec = config["services"]["proxy"]
    assert spec["ports"] == [
        {"mode": "host", "target": 8080, "published": 18123, "protocol": "tcp"}
    ]
    assert spec["deploy"]["mode"] == "global"
    assert set(spec["networks"]) == {"frontend"}
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert not spec["user"].startswith("0")
    (cfg,) = spec["configs"]
    assert cfg["target"] == "/usr/local/etc/haproxy/haproxy.cfg"
    source = Path(config["configs"][cfg["source"]]["file"])
    assert source == STACKS / "edge" / "haproxy.cfg"
    # The config's name carries a digest of the file: a changed file is a new swarm config.
    assert cfg["source"] == "haproxy_cfg_" + hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    # It finds the fronts by the alias every front stack gives them on `frontend`.
    (target,) = re.findall(r"^\s*server-template front \d+ tasks\.(\S+):8080$",
                           source.read_text(), re.M)
    for name, key in [("front.yml", "app"), ("front.no-ipvs.yml", "app"), ("shop.yml", "front"),
                      ("shop.no-ipvs.yml", "front")]:
        assert render(name)["services"][key]["networks"]["frontend"] == {"aliases": [target]}


def test_makefile_steps_use_existing_stack_files() -> None:
    """`make -n` of every tutorial step (with and without NO_IPVS) prints docker commands
    whose stack files exist."""
    commands: list[str] = []
    for no_ipvs in ("0", "1"):
        for target in (
            "networks",
            "build",
            "deploy",
            "status",
            "scale REPLICAS=4",
            "update",
            "rollback",
            "down",
        ):
            result = subprocess.run(
                ["make", "-n", "--no-print-directory", *target.split(), f"NO_IPVS={no_ipvs}",
                 *NO_HOST_CONFIG],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip(), target
            commands += result.stdout.splitlines()
    files = {m for line in commands for m in re.findall(r"-c (\S+)", line)}
    assert files >= {
        "stacks/prod.yml",
        "stacks/front.yml",
        "stacks/front.no-ipvs.yml",
        "stacks/no-ipvs.yml",
        "stacks/edge.yml",
    }
    for name in files:
        assert (REPO / name).is_file(), name


@docker
def test_registry_runs_on_a_manager_with_tls_from_secrets(
    render: Any, stack_config_client: str, tmp_path: Path
) -> None:
    """The lab registry: one task on a manager, port published in host mode, TLS certificate
    and key as secrets (the key readable by the registry's user alone), storage on a volume,
    hardened like the shop's containers; without certificate files it does not render."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_text("cert")
    key.write_text("key")
    env = {**ENV, "REGISTRY_TLS_CERT": str(cert), "REGISTRY_TLS_KEY": str(key),
           "REGISTRY_PORT": "5123"}
    config = render("registry.yml", env=env)
    spec = config["services"]["server"]
    assert spec["ports"] == [{"mode": "host", "target": 5000, "published": 5123, "protocol": "tcp"}]
    assert spec["deploy"]["replicas"] == 1
    assert spec["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert not spec["user"].startswith("0")
    secrets = {s["target"]: s for s in spec["secrets"]}
    assert secrets["registry.key"]["mode"] == 0o400
    assert secrets["registry.key"]["uid"] == spec["user"].split(":")[0]
    assert {Path(config["secrets"][s["source"]]["file"]) for s in spec["secrets"]} == {cert, key}
    (volume,) = spec["volumes"]
    (cfg,) = spec["configs"]
    registry_config = yaml.safe_load(Path(config["configs"][cfg["source"]]["file"]).read_text())
    assert registry_config["storage"]["filesystem"]["rootdirectory"] == volume["target"]
    assert registry_config["http"]["tls"] == {
        "certificate": f"/run/secrets/{secrets['registry.crt']['target']}",
        "key": "/run/secrets/registry.key",
    }
    assert registry_config["http"]["addr"] == ":5000"

    missing = subprocess.run(
        [stack_config_client, "stack", "config", "-c", str(STACKS / "registry.yml")],
        capture_output=True, text=True, timeout=60, env={**_base_env(), **ENV},
    )
    assert missing.returncode != 0
    # Which of the two missing files it names first varies from run to run.
    assert re.search(r"required variable REGISTRY_TLS_(CERT|KEY) is missing", missing.stderr)


def make_n(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", "--no-print-directory", *args, *NO_HOST_CONFIG], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def test_make_push_tags_and_pushes_every_release_and_the_edge() -> None:
    """`make push REGISTRY=...` prints a docker tag and a docker push for releases 1 and 2
    of the three services and for the edge image, under the registry's name; without
    REGISTRY it refuses."""
    result = make_n("push", "REGISTRY=reg.example:5000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = [(f"shop/{svc}-service:{rel}", f"reg.example:5000/shop/{svc}-service:{rel}")
                for svc in ("prod", "coupon", "front") for rel in (1, 2)]
    expected.append(("shop/edge-haproxy:bookworm", "reg.example:5000/shop/edge-haproxy:bookworm"))
    for local, remote in expected:
        assert f"docker tag {local} {remote}" in lines
        assert f"docker push -q {remote}" in lines
    assert len(lines) == 2 * len(expected)

    refused = make_n("push")
    assert refused.returncode != 0
    assert "REGISTRY=host:port" in refused.stderr


def test_deploys_pin_digests_only_from_a_registry() -> None:
    """With REGISTRY the deploy steps name the registry's images and resolve their digests
    (--resolve-image always); without, they deploy local images and never ask a registry."""
    for target in ("deploy", "update", "scale"):
        remote = make_n(target, "NO_IPVS=1", "REGISTRY=reg.example:5000", "REPLICAS=3")
        assert remote.returncode == 0, remote.stderr
        deploys = [line for line in remote.stdout.splitlines() if "stack deploy" in line]
        assert deploys, target
        for line in deploys:
            assert "--resolve-image always" in line, line
            assert "SHOP_NAMESPACE=reg.example:5000/shop " in line or "edge.yml" in line, line
        local = make_n(target, "NO_IPVS=1", "REPLICAS=3")
        for line in (x for x in local.stdout.splitlines() if "stack deploy" in x):
            assert "--resolve-image never" in line, line
            assert "reg.example" not in line
    edge = make_n("deploy-edge", "REGISTRY=reg.example:5000")
    assert "EDGE_IMAGE=reg.example:5000/shop/edge-haproxy:bookworm " in edge.stdout


AUTOSCALE_ENV = {
    "PROMETHEUS_IMAGE": "acme/prometheus:9",
    "PROMETHEUS_PORT": "19090",
    "AUTOSCALER_IMAGE": "acme/autoscaler:9",
    "DOCKER_GID": "105",
    "AUTOSCALE_INTERVAL_S": "2",
    "AUTOSCALE_DOWN_STABILIZATION_S": "30",
}


@docker
@pytest.mark.parametrize("name", ["front.yml", "front.no-ipvs.yml"])
def test_front_carries_the_autoscale_labels(render: Any, name: str) -> None:
    """The front's service labels hold its autoscale bounds and target, from AUTOSCALE_*,
    defaulting to 2, 6 and 250 req/s per replica."""
    labels = app(render(name, env={}))["deploy"]["labels"]
    assert labels == {
        "io.swarm-shop.autoscale.min": "2",
        "io.swarm-shop.autoscale.max": "6",
        "io.swarm-shop.autoscale.target-rps": "250",
    }
    env = {"AUTOSCALE_MIN": "3", "AUTOSCALE_MAX": "9", "AUTOSCALE_TARGET_RPS": "20"}
    assert app(render(name, env=env))["deploy"]["labels"] == {
        "io.swarm-shop.autoscale.min": "3",
        "io.swarm-shop.autoscale.max": "9",
        "io.swarm-shop.autoscale.target-rps": "20",
    }


def one_task(config: dict[str, Any], name: str, image: str, user: str) -> dict[str, Any]:
    """Check what the autoscale stack's services share; return the service's spec."""
    spec = config["services"][name]
    assert (spec["image"], spec["user"]) == (image, user)
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert spec["deploy"]["replicas"] == 1
    assert spec["deploy"]["endpoint_mode"] == "dnsrr"  # no VIP: works without IPVS
    return spec


def render_autoscale(render: Any, env: dict[str, str]) -> dict[str, Any]:
    """The autoscale stack as `make autoscale` deploys it: with its Docker API proxy."""
    return render("autoscale.yml", "docker-api.yml",
                  env={"DOCKER_API_CONSUMER": "autoscaler", **env})


@docker
def test_autoscale_stack_prometheus(render: Any) -> None:
    """Prometheus: one task on a manager, its config as a swarm config, data in a tmpfs
    volume it owns, its UI in host mode on PROMETHEUS_PORT, on `backend` (to find every
    replica) and the internal `metrics` network; hardened like the shop's services."""
    config = render_autoscale(render, AUTOSCALE_ENV)
    spec = one_task(config, "prometheus", "acme/prometheus:9", "65534:65534")
    assert spec["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert spec["ports"] == [
        {"mode": "host", "target": 9090, "published": 19090, "protocol": "tcp"}
    ]
    assert set(spec["networks"]) == {"backend", "metrics"}
    assert "--storage.tsdb.path=/prometheus" in spec["command"]
    assert any(arg.startswith("--storage.tsdb.retention.time=") for arg in spec["command"])
    (volume,) = spec["volumes"]
    assert volume["target"] == "/prometheus"
    options = config["volumes"][volume["source"]]["driver_opts"]
    assert options["type"] == "tmpfs"
    assert "uid=65534" in options["o"]
    (cfg,) = spec["configs"]
    assert cfg["target"] == "/etc/prometheus/prometheus.yml"
    source = Path(config["configs"][cfg["source"]]["file"])
    assert source == REPO / "observability" / "prometheus.yml"
    assert config["networks"]["metrics"]["internal"] is True
    assert config["networks"]["backend"] == {"name": "backend", "external": True}


@docker
def test_autoscale_stack_scaler(render: Any) -> None:
    """The autoscaler: one task, as uid 10001, read-only, no capabilities, no published port,
    no Docker socket: its engine is the stack's docker-api proxy (DOCKER_HOST), which it
    reaches on the internal `docker-api` network; its metrics on `metrics`."""
    config = render_autoscale(render, AUTOSCALE_ENV)
    spec = one_task(config, "scaler", "acme/autoscaler:9", "10001:10001")
    assert "ports" not in spec
    assert set(spec["networks"]) == {"metrics", "docker-api"}
    assert spec["deploy"]["update_config"]["order"] == "stop-first"  # never two at once
    assert [v for v in spec["volumes"] if v["type"] != "tmpfs"] == []
    env = spec["environment"]
    assert env["DOCKER_HOST"] == "tcp://docker-api:2375"
    assert "docker-api" in config["services"]
    assert env["AUTOSCALE_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert (env["AUTOSCALE_INTERVAL_S"], env["AUTOSCALE_DOWN_STABILIZATION_S"]) == ("2", "30")
    assert "curl" not in " ".join(spec["healthcheck"]["test"])
    defaults = render_autoscale(render, {})["services"]
    assert defaults["scaler"]["environment"]["AUTOSCALE_DOWN_STABILIZATION_S"] == "60"
    assert defaults["scaler"]["environment"]["AUTOSCALE_INTERVAL_S"] == "5"
    assert defaults["prometheus"]["image"] == "prom/prometheus:v2.53.5"
    assert defaults["prometheus"]["ports"][0]["published"] == 9090


@docker
def test_docker_api_proxy_is_the_only_way_to_the_socket(
    render: Any, stack_config_client: str
) -> None:
    """The proxy: the edge's HAProxy image as Debian's haproxy user in the socket's group
    (DOCKER_GID), read-only, no capabilities, the socket mounted read-only, one task on a
    manager, on the internal network `docker-api` only, no published port; haproxy.cfg and
    the consumer's allow-list as configs named after the consumer. Without a consumer the
    file does not render."""
    config = render_autoscale(render, {**AUTOSCALE_ENV, "EDGE_IMAGE": "acme/edge:9",
                                       "DOCKER_API_CONFIG_VERSION": "abc"})
    spec = one_task(config, "docker-api", "acme/edge:9", "100:105")
    assert spec["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert "ports" not in spec
    assert set(spec["networks"]) == {"docker-api"}
    assert config["networks"]["docker-api"] == {"driver": "overlay", "internal": True}
    (socket,) = [v for v in spec["volumes"] if v["type"] == "bind"]
    assert socket == {"type": "bind", "source": "/var/run/docker.sock",
                      "target": "/var/run/docker.sock", "read_only": True}
    targets = {c["target"]: config["configs"][c["source"]] for c in spec["configs"]}
    assert targets["/usr/local/etc/haproxy/haproxy.cfg"] == {
        "name": "autoscaler_docker_api_cfg_abc", "file": str(STACKS / "docker-api/haproxy.cfg")}
    assert targets["/usr/local/etc/haproxy/allow.lst"] == {
        "name": "autoscaler_docker_api_allow_abc",
        "file": str(STACKS / "docker-api/autoscaler.lst")}
    assert "allow.lst" in (STACKS / "docker-api/haproxy.cfg").read_text()

    missing = subprocess.run(
        [stack_config_client, "stack", "config", "-c", str(STACKS / "docker-api.yml")],
        capture_output=True, text=True, timeout=60, env=_base_env(),
    )
    assert missing.returncode != 0
    assert "DOCKER_API_CONSUMER" in missing.stderr


def test_prometheus_config_scrapes_every_replica_of_the_shop() -> None:
    """The live config: each service's tasks.<stack>_app by DNS every 5 s, a swarm_service
    label on every target, and the autoscaler on the port its stack gives it."""
    config = yaml.safe_load((REPO / "observability" / "prometheus.yml").read_text())
    assert seconds(config["global"]["scrape_interval"]) == 5
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scaler_env = yaml.safe_load((STACKS / "autoscale.yml").read_text())["services"]["scaler"]
    expected = {
        "shop-prod": ("tasks.prod_app", 3001),
        "shop-coupon": ("tasks.coupon_app", 3002),
        "shop-front": ("tasks.front_app", 8080),
        "autoscaler": ("tasks.autoscale_scaler",
                       int(scaler_env["environment"]["AUTOSCALE_METRICS_PORT"])),
    }
    for name, (dns_name, port) in expected.items():
        (sd,) = jobs[name]["dns_sd_configs"]
        assert (sd["names"], sd["type"], sd["port"]) == ([dns_name], "A", port)
        assert seconds(sd["refresh_interval"]) <= 5
        (relabel,) = jobs[name]["relabel_configs"]
        assert relabel["source_labels"] == ["__meta_dns_name"]
        assert relabel["target_label"] == "swarm_service"
        assert re.fullmatch(relabel["regex"], dns_name).group(1) == dns_name.removeprefix("tasks.")


def test_makefile_autoscale_and_load_targets() -> None:
    """`make -n`: autoscale deploys stacks/autoscale.yml as stack `autoscale` (with NO_IPVS too),
    load sends traffic to 127.0.0.1 only, down removes the autoscale stack and its volume."""
    def dry(target: str, *args: str) -> str:
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", target, *args, *NO_HOST_CONFIG],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    for no_ipvs in ("0", "1"):
        out = dry("autoscale", f"NO_IPVS={no_ipvs}", "PROMETHEUS_IMAGE=shop/prometheus:bookworm")
        assert "-c stacks/autoscale.yml -c stacks/docker-api.yml autoscale" in out
        assert "DOCKER_API_CONSUMER=autoscaler " in out
        assert "PROMETHEUS_IMAGE=shop/prometheus:bookworm" in out
    load = dry("load", "RATE=150", "SECONDS=20", "EDGE_PORT=8000")
    assert "--rate 150 --duration 20" in load
    assert re.findall(r"https?://([^/:\s]+)", load) == ["127.0.0.1"]
    down = dry("down")
    (removing,) = [line for line in down.splitlines() if " stack rm " in line]
    assert "autoscale" in removing.split()
    assert "volume rm autoscale_prometheus-data" in down
    assert "--target autoscaler" in dry("build")


def test_stack_files_are_what_the_definition_gives() -> None:
    """Every generated stack file is exactly what `make stacks` writes from
    stacks/definition.yml: an edit to a generated file, or to the definition or
    stacks/edge/haproxy.cfg without `make stacks`, fails here."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render_stacks.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    generated = [name for name in ("prod.yml", "coupon.yml", "front.yml", "no-ipvs.yml",
                                   "front.no-ipvs.yml", "edge.yml", "shop.yml", "shop.no-ipvs.yml")
                 if (STACKS / name).read_text().startswith("# Generated by `make stacks`")]
    assert len(generated) == 8


SHOP_ENV = {**ENV, "EDGE_IMAGE": "acme/edge:7"}
for _name in ("PROD", "COUPON", "FRONT"):
    SHOP_ENV |= {f"{_name}_TAG": "7", f"{_name}_REPLICAS": "3"}


@docker
def test_one_stack_runs_each_service_as_its_own_stack_does(render: Any) -> None:
    """shop.yml's prod, coupon and front are the per-service stacks' services, setting for
    setting (update, rollback, health, stop, resources, hardening, aliases, the front's port
    and labels); shop.no-ipvs.yml's are those of the no-IPVS files, and its edge is
    stacks/edge.yml's. Only the networks differ: the one stack owns its own."""
    shop = render("shop.yml", env=SHOP_ENV)
    for service in ("prod", "coupon", "front"):
        assert shop["services"][service] == app(render(f"{service}.yml", env=SHOP_ENV))
    assert set(shop["services"]) == {"prod", "coupon", "front"}

    no_ipvs = render("shop.no-ipvs.yml", env=SHOP_ENV)
    for service in ("prod", "coupon"):
        assert no_ipvs["services"][service] == app(
            render(f"{service}.yml", "no-ipvs.yml", env=SHOP_ENV))
    assert no_ipvs["services"]["front"] == app(render("front.no-ipvs.yml", env=SHOP_ENV))
    edge = render("edge.yml", env=SHOP_ENV)
    assert no_ipvs["services"]["edge"] == edge["services"]["proxy"]
    assert no_ipvs["configs"] == edge["configs"]

    for config in (shop, no_ipvs):
        assert config["networks"] == {
            "backend": {"driver": "overlay", "attachable": True},
            "frontend": {"driver": "overlay", "attachable": True},
        }


@docker
def test_one_stack_tags_and_counts_per_service(render: Any) -> None:
    """Each service of the one stack has its own tag and replica count (PROD_TAG ...,
    PROD_REPLICAS ...), defaulting to latest and 2; IMG_TAG and REPLICAS do not reach it
    (compose cannot default one variable to another: make passes them)."""
    env = {"SHOP_NAMESPACE": "acme", "IMG_TAG": "9", "REPLICAS": "9",
           "PROD_TAG": "1", "FRONT_TAG": "2", "COUPON_REPLICAS": "4"}
    for name in ("shop.yml", "shop.no-ipvs.yml"):
        services = render(name, env=env)["services"]
        assert {s: (services[s]["image"], services[s]["deploy"]["replicas"])
                for s in ("prod", "coupon", "front")} == {
            "prod": ("acme/prod-service:1", 2),
            "coupon": ("acme/coupon-service:latest", 4),
            "front": ("acme/front-service:2", 2),
        }
    assert render("shop.no-ipvs.yml", env={})["services"]["edge"]["ports"][0]["published"] == 80


# The stack files deployed with the Docker API proxy, and the consumer each names.
DOCKER_API_CONSUMERS = {"autoscale.yml": "autoscaler", "console.yml": "console"}


def rendered_stacks(render: Any) -> dict[str, dict[str, Any]]:
    """Every stack file as deployed (a consumer's with the proxy file)."""
    env = {**SHOP_ENV, "REGISTRY_TLS_CERT": __file__, "REGISTRY_TLS_KEY": __file__}
    stacks = {}
    for path in sorted(STACKS.glob("*.yml")):
        if path.name in ("definition.yml", "no-ipvs.yml", "docker-api.yml"):
            continue
        consumer = DOCKER_API_CONSUMERS.get(path.name)
        stacks[path.name] = (
            render(path.name, env=env) if consumer is None
            else render(path.name, "docker-api.yml", env={**env, "DOCKER_API_CONSUMER": consumer}))
    return stacks


@docker
def test_only_the_docker_api_proxies_mount_the_socket(render: Any) -> None:
    """No service of any stack file mounts the engine's socket, except the docker-api proxy
    deployed with each of its consumers (the autoscaler's stack, the console's), which mounts
    it read-only."""
    mounts = {
        (name, service): volume
        for name, config in rendered_stacks(render).items()
        for service, spec in config["services"].items()
        for volume in spec.get("volumes", [])
        if "docker.sock" in str(volume.get("source", ""))
    }
    assert sorted(mounts) == [(name, "docker-api") for name in sorted(DOCKER_API_CONSUMERS)]
    assert all(volume["read_only"] is True for volume in mounts.values())


def test_makefile_one_stack_targets() -> None:
    """`make -n`: shop-deploy deploys stacks/shop.yml (NO_IPVS=1: shop.no-ipvs.yml with
    EDGE_PORT) as stack `shop` with each service's tag and count, IMG_TAG and REPLICAS as
    their defaults; shop-down removes the stack; shop-update refuses an unknown SERVICE;
    `make stacks` runs the generator."""
    plain = make_n("shop-deploy", "IMG_TAG=3", "REPLICAS=4", "FRONT_TAG=5")
    assert plain.returncode == 0, plain.stderr
    (line,) = [x for x in plain.stdout.splitlines() if "stack deploy" in x]
    assert " stack deploy " in line
    assert line.endswith(" --resolve-image never -c stacks/shop.yml shop")
    for expected in ("PROD_TAG=3", "COUPON_TAG=3", "FRONT_TAG=5", "PROD_REPLICAS=4",
                     "COUPON_REPLICAS=4", "FRONT_REPLICAS=4"):
        assert expected in line.split(), expected
    no_ipvs = make_n("shop-deploy", "NO_IPVS=1", "EDGE_PORT=8000")
    (line,) = [x for x in no_ipvs.stdout.splitlines() if "stack deploy" in x]
    assert line.endswith(" -c stacks/shop.no-ipvs.yml shop")
    assert "EDGE_PORT=8000" in no_ipvs.stdout.split()
    assert "docker stack rm shop" in make_n("shop-down").stdout
    refused = make_n("shop-update", "SERVICE=nope")
    assert refused.returncode != 0
    assert "SERVICE must be one of prod coupon front" in refused.stderr
    assert "scripts/render_stacks.py" in make_n("stacks").stdout


def test_readme_walk_and_try_it_are_make_steps_that_exist() -> None:
    """Every make command of the README's walk and of "Try it" (Scaling with traffic) is a
    step make knows and can run with nothing more on its command line (dry run)."""
    readme = (REPO / "README.md").read_text()
    walk = readme.split("<!-- walk: ", 1)[1].split("```", 2)[1]
    try_it = readme.split("### Try it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [re.split(r"\s+#", line, maxsplit=1)[0].split()
                for line in (walk + try_it).splitlines()]
    steps = [words[1:] for words in commands if words[:1] == ["make"]]
    assert len(steps) >= 12
    for args in steps:
        result = make_n(*args)
        assert result.returncode == 0, (args, result.stderr)
