"""The container and Kubernetes files: the manifests validate against Kubernetes' schemas (pinned version, strict),
the Dockerfile parses and says what the README promises, and the packaged config loads as the relay reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.31.0"  # the pinned version the manifests are checked against


def documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") != "Kustomization"]


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_each_manifest_validates_strictly(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_deployment_probes_drain_and_config_fit_the_relay(tmp_path):
    from relay.config import load_config
    from relay.http import LIVE, READY

    docs = {doc["kind"]: doc for _, doc in documents()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] in LIVE
    assert container["readinessProbe"]["httpGet"]["path"] in READY
    text = docs["ConfigMap"]["data"]["config.yaml"]
    sa = tmp_path / "sa.json"
    sa.write_text('{"type": "service_account"}')
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("/var/run/secrets/relay/service-account.json", str(sa)))
    config, _ = load_config(str(path), env={"RELAY_MASTER_KEY": "k", "GEMINI_API_KEY": "g",
                                            "VERTEXAI_PROJECT": "p"})
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > config.drain_timeout + pre_stop
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]


def test_the_dockerfile_runs_the_relay_unprivileged_with_a_health_check():
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    assert parser.baseimage.startswith("python:3.11-slim")
    instructions = {i["instruction"]: i["value"] for i in parser.structure}
    assert instructions["USER"] not in ("root", "0")
    assert "/health" in instructions["HEALTHCHECK"] and instructions["EXPOSE"] == "4000"
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    assert '"relay", "serve"' in instructions["ENTRYPOINT"]
