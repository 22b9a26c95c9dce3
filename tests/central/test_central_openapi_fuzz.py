"""Schemathesis against the served OpenAPI document: no 5xx, every response matches the spec.

Central runs under uvicorn (SQLite) with a registered model and a device; admin routes get the
admin token, device routes the device's token, so generated requests reach the handlers
instead of stopping at authentication. Examples are bounded per operation.
"""

from __future__ import annotations

import hypothesis
import pytest
from central_helpers import ADMIN_TOKEN, CentralProcess, free_port, require, upload_body

schemathesis = require("schemathesis", "schemathesis==4.32.5")
positive_data_acceptance = require("schemathesis.specs.openapi.checks", "schemathesis==4.32.5").positive_data_acceptance

pytestmark = pytest.mark.slow

DEVICE_PATHS = (
    "/v1/results:batch",
    "/v1/models/current",
    "/v1/models/{name}/{version}/files/{file_name}",
    "/v1/drift",
    "/v1/devices/{device_id}/model-report",
)


@pytest.fixture(scope="module")
def central_for_fuzz(tmp_path_factory, central_signing_key, test_artifact):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("fuzz")
    central = CentralProcess(
        {
            "EDGESEG_DATABASE_URL": f"sqlite:///{folder / 'central.db'}",
            "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
            "EDGESEG_ENV": "test",
            "EDGESEG_PUBLIC_KEY_PATH": str(central_signing_key[1]),
            "EDGESEG_MAX_BATCH_RESULTS": "50",
        },
        free_port(),
        folder / "central.log",
    )
    central.start()
    central.call("POST", "/v1/models", upload_body(test_artifact))
    device = central.call("POST", "/v1/devices", {"store": "s1"})
    yield central, device
    central.kill()


# Not checked: positive_data_acceptance. The contract has rules a JSON schema cannot state (a
# registered model_version, probabilities summing to 1, a valid Ed25519 signature), so a
# schema-valid body is rightly refused with 422. Every other check runs, negative data too.
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


def _fuzz(strategy, headers):  # type: ignore[no-untyped-def]
    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    return check


# Schemathesis' pytest plugin does not work with pytest 9 yet, so each operation's strategy
# is driven by Hypothesis directly; failures of every operation are collected, then reported.
def test_api_conforms_to_its_openapi_document(central_for_fuzz) -> None:  # type: ignore[no-untyped-def]
    central, device = central_for_fuzz
    schema = schemathesis.openapi.from_url(f"{central.url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        token = device["token"] if operation.path in DEVICE_PATHS else ADMIN_TOKEN
        headers = {"Authorization": f"Bearer {token}"}
        for mode in MODES:
            check = _fuzz(operation.as_strategy(generation_mode=mode), headers)
            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE  # no input to get wrong
            except Exception as exc:  # noqa: BLE001 - report every operation's failure at once
                failures[f"{operation.method.upper()} {operation.path} ({mode.value})"] = str(exc)[:1500]
    assert operations >= 15
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
