"""Simulated Microsoft Entra ID: OpenID discovery and the v2 client-credentials token endpoint.

Just enough of Entra for msal (``ConfidentialClientApplication`` with ``authority=<sandbox>/<tenant>``
and ``instance_discovery=False``): msal fetches ``/{tenant}/v2.0/.well-known/openid-configuration``,
reads ``authorization_endpoint`` and ``token_endpoint`` (both required), then POSTs the client
credentials grant to the token endpoint with the secret in an HTTP Basic header. Errors carry the
real AADSTS codes so the CLI's diagnosis can be tested.

A tenant holds several app registrations, each with its own client id and secret (``register_app``), as a
directory holds one app per integration or per customer; a secret is accepted only for its own app.
``refusals`` keeps (client id, AADSTS code) of every refused token request, so a test can prove that no
other app's secret was ever tried here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from ukg2d365.sandbox.tokens import TokenRegistry
from ukg2d365.sandbox.types import SimRequest, SimResponse

RESERVED_SCOPES = {"openid", "profile", "offline_access"}  # msal may add these; Entra ignores them here


class EntraService:
    def __init__(
        self,
        tokens: TokenRegistry,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        resource: str,
        *,
        base_url: str,
    ) -> None:
        self.tokens = tokens
        self.tenant_id = tenant_id
        self.client_id = client_id  # the first app registration: the one the sandbox's config names
        self.client_secret = client_secret
        self.resource = resource.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self._apps: dict[str, tuple[str, str]] = {}  # lower-cased client id -> (client id, secret)
        self.refusals: list[tuple[str, int]] = []
        self.register_app(client_id, client_secret)

    def register_app(self, client_id: str, client_secret: str) -> None:
        """Another app registration in this tenant (client ids compare case-insensitively, as GUIDs do)."""
        self._apps[client_id.lower()] = (client_id, client_secret)

    # ------------------------------------------------------------------ routing

    def handle(self, req: SimRequest) -> SimResponse:
        parts = [p for p in req.path.split("/") if p]
        if len(parts) >= 2 and parts[-2:] == [".well-known", "openid-configuration"]:
            if req.method != "GET" or not (len(parts) == 3 or (len(parts) == 4 and parts[1] == "v2.0")):
                return self._not_found(req)
            return self._discovery(parts[0])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if req.method != "POST":
                return self._error(405, "invalid_request", 900561, "The endpoint only accepts POST requests.")
            return self._token(parts[0], req)
        return self._not_found(req)

    # ------------------------------------------------------------------ discovery

    def _discovery(self, tenant: str) -> SimResponse:
        if tenant.lower() != self.tenant_id.lower():
            return self._unknown_tenant(tenant)
        root = f"{self.base_url}/{self.tenant_id}"
        return SimResponse.json(
            200,
            {
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.base_url}/{self.tenant_id}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{root}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "appid"],
                "kerberos_endpoint": f"{root}/kerberos",
                "tenant_region_scope": "NA",
                "cloud_instance_name": "sandbox.invalid",
                "cloud_graph_host_name": "graph.sandbox.invalid",
                "msgraph_host": "graph.sandbox.invalid",
                "rbac_url": "https://pas.sandbox.invalid",
            },
        )

    # ------------------------------------------------------------------ token

    def _token(self, tenant: str, req: SimRequest) -> SimResponse:
        if tenant.lower() != self.tenant_id.lower():
            return self._unknown_tenant(tenant)
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if grant != "client_credentials":
            if not grant:
                return self._error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                )
            return self._error(
                400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
            )
        client_id, secret = self._client_auth(req, form)
        if not client_id:
            return self._error(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        app = self._apps.get(client_id.lower())
        if app is None:
            self.refusals.append((client_id, 700016))
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'. "
                "This can happen if the application has not been installed by the administrator of the tenant "
                "or consented to by any user in the tenant. You may have sent your authentication request to "
                "the wrong tenant.",
            )
        registered_id, registered_secret = app
        if "client_assertion" in form:
            return self._error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation (sandbox accepts secrets only).",
            )
        if secret is None:
            return self._error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if secret != registered_secret:
            self.refusals.append((client_id, 7000215))
            return self._error(
                401,
                "invalid_client",
                7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{registered_id}'.",
            )
        scopes = set((form.get("scope") or "").split()) - RESERVED_SCOPES
        wanted = f"{self.resource}/.default"
        if scopes != {wanted}:
            shown = " ".join(sorted(scopes)) or "(none)"
            resource = shown.rsplit("/.default", 1)[0] if shown.endswith("/.default") else shown
            return self._error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {self.tenant_id}. "
                "This can happen if the application has not been installed by the administrator of the tenant "
                "or consented to by any user in the tenant. You might have sent your authentication request "
                "to the wrong tenant.",
            )
        token, lifetime = self.tokens.issue(registered_id, self.resource)
        return SimResponse.json(
            200,
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token},
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    @staticmethod
    def _client_auth(req: SimRequest, form: dict[str, str]) -> tuple[str | None, str | None]:
        """client_secret_basic (what msal sends) or client_secret_post."""
        header = req.header("authorization") or ""
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return form.get("client_id"), None
            user, sep, password = decoded.partition(":")
            if sep:
                # RFC 6749 2.3.1: both halves are form-urlencoded before Basic encoding
                return unquote_plus(user), unquote_plus(password)
        return form.get("client_id"), form.get("client_secret")

    # ------------------------------------------------------------------ errors

    def _unknown_tenant(self, tenant: str) -> SimResponse:
        return self._error(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud. Check with your subscription administrator, this may happen if there "
            "are no active subscriptions for the tenant.",
        )

    def _not_found(self, req: SimRequest) -> SimResponse:
        return self._error(404, "invalid_request", 900023, f"No such endpoint: {req.method} {req.path}.")

    @staticmethod
    def _error(status: int, error: str, code: int, description: str) -> SimResponse:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = dt.datetime.now(dt.timezone.utc)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.sandbox.invalid/error?code={code}",
        }
        return SimResponse.json(status, body, {"Cache-Control": "no-store, no-cache"})
