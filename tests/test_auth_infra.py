"""CDK assertions for auth: the generated secret, and the deploy-time modes."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from auth.config import (
    AUTH_AUDIENCE_ENV,
    AUTH_ISSUER_ENV,
    AUTH_JWKS_URL_ENV,
    AUTH_MODE_ENV,
    AUTH_SECRET_ARN_ENV,
)
from eventlog import endpoints
from infra.auth import Auth, AuthConfig, AuthStack
from infra.lambda_code import export_requirements

JWKS_URL = "https://issuer.example.com/.well-known/jwks.json"


@pytest.fixture(scope="module")
def stacks() -> dict[str, Any]:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    default = AuthStack(app, endpoints.AUTH_STACK)
    off = AuthStack(app, "Off", config=AuthConfig(mode="off"))
    jwks = AuthStack(
        app,
        "Jwks",
        config=AuthConfig(
            mode="jwks", jwks_url=JWKS_URL, audience="realtime", issuer="https://issuer.example.com"
        ),
    )
    return {"default": default, "off": off, "jwks": jwks}


def test_the_secret_is_generated_at_deploy_and_never_in_the_template(
    stacks: dict[str, Any],
) -> None:
    template = Template.from_stack(stacks["default"])
    template.resource_count_is("AWS::SecretsManager::Secret", 1)
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": {
                "PasswordLength": 64,
                "ExcludePunctuation": True,
                "IncludeSpace": False,
            },
            "SecretString": Match.absent(),
        },
    )
    text = json.dumps(template.to_json())
    assert "SecretString" not in text.replace("GenerateSecretString", "")
    # The output is the secret's ARN, for the backend that issues tokens; never its value.
    [secret_id] = template.find_resources("AWS::SecretsManager::Secret")
    template.has_output(endpoints.AUTH_SECRET_ARN, {"Value": {"Ref": secret_id}})
    assert "secretsmanager:GetSecretValue" not in text  # readers are granted in their stacks
    auth = stacks["default"].auth
    assert auth.environment[AUTH_MODE_ENV] == "hs256"
    assert AUTH_SECRET_ARN_ENV in auth.environment
    assert auth.dependency_groups == ()


def test_off_has_no_secret_and_says_so_at_synth(stacks: dict[str, Any]) -> None:
    template = Template.from_stack(stacks["off"])
    template.resource_count_is("AWS::SecretsManager::Secret", 0)
    assert endpoints.AUTH_SECRET_ARN not in template.to_json().get("Outputs", {})
    Annotations.from_stack(stacks["off"]).has_warning("*", Match.string_like_regexp("AUTH IS OFF"))
    assert stacks["off"].auth.environment == {AUTH_MODE_ENV: "off"}


def test_jwks_passes_the_provider_s_settings_and_bundles_cryptography(
    stacks: dict[str, Any],
) -> None:
    Template.from_stack(stacks["jwks"]).resource_count_is("AWS::SecretsManager::Secret", 0)
    auth: Auth = stacks["jwks"].auth
    assert auth.environment == {
        AUTH_MODE_ENV: "jwks",
        AUTH_JWKS_URL_ENV: JWKS_URL,
        AUTH_AUDIENCE_ENV: "realtime",
        AUTH_ISSUER_ENV: "https://issuer.example.com",
    }
    assert auth.dependency_groups == ("jwks",)
    requirements = export_requirements(("websocket", *auth.dependency_groups))
    assert "pyjwt==" in requirements
    assert "cryptography==" in requirements
    assert "cryptography==" not in export_requirements("websocket")


def test_the_mode_comes_from_cdk_context() -> None:
    app = cdk.App(context={"auth": "JWKS", "authJwksUrl": JWKS_URL, "authAudience": "a"})
    config = AuthConfig.from_context(app.node)
    assert (config.mode, config.jwks_url, config.audience, config.issuer) == (
        "jwks",
        JWKS_URL,
        "a",
        None,
    )
    assert AuthConfig.from_context(cdk.App().node) == AuthConfig()  # hs256 by default
    with pytest.raises(ValueError, match="auth= must be one of"):
        AuthConfig.from_context(cdk.App(context={"auth": "none"}).node)
    with pytest.raises(ValueError, match="https"):
        AuthConfig(mode="jwks", jwks_url="http://issuer.example.com/jwks")
