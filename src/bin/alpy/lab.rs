//! `alpy lab`: a lab server's state, for people (the `alpy::lab` client
//! is for tests).

use serde_json::Value;

/// The server and token: flags, else `REMOTE_LAB_URL` / `REMOTE_LAB_TOKEN`.
fn target(url: Option<String>, token: Option<String>) -> alpy::Result<(String, String)> {
    let url = url
        .or_else(|| std::env::var(alpy::lab::URL_VAR).ok())
        .ok_or_else(|| alpy::Error::Config(format!("give --url or set {}", alpy::lab::URL_VAR)))?;
    let token = token
        .or_else(|| std::env::var(alpy::lab::TOKEN_VAR).ok())
        .ok_or_else(|| {
            alpy::Error::Config(format!("give --token or set {}", alpy::lab::TOKEN_VAR))
        })?;
    Ok((url.trim_end_matches('/').to_string(), token))
}

/// A transport failure (no answer) as a lab error.
fn unreached(what: String) -> impl FnOnce(reqwest::Error) -> alpy::Error {
    move |e| alpy::Error::Lab {
        what,
        status: e.status().map(|s| s.as_u16()),
        detail: e.to_string(),
    }
}

/// A refusal: the server's status and its `detail`.
fn refused(what: String, status: reqwest::StatusCode, v: &Value) -> alpy::Error {
    alpy::Error::Lab {
        what,
        status: Some(status.as_u16()),
        detail: v["detail"].as_str().unwrap_or("(no detail)").to_string(),
    }
}

fn get(url: &str, token: &str, path: &str) -> alpy::Result<Value> {
    let what = format!("GET {url}{path}");
    let r = alpy::lab::http_client(token, std::time::Duration::from_secs(60))?
        .get(format!("{url}{path}"))
        .send()
        .map_err(unreached(what.clone()))?;
    let status = r.status();
    if !status.is_success() {
        // The status first: a proxy's refusal may not be JSON.
        let v: Value = r.json().unwrap_or_default();
        return Err(refused(what, status, &v));
    }
    r.json().map_err(unreached(what))
}

/// `alpy lab status|queue|sessions|destroy`.
pub(crate) fn run(
    what: &str,
    id: Option<&str>,
    force: bool,
    json: bool,
    url: Option<String>,
    token: Option<String>,
) -> alpy::Result<()> {
    let (url, token) = target(url, token)?;
    if what == "destroy" {
        return destroy(&url, &token, id, force);
    }
    let q = get(&url, &token, "/queue")?;
    let empty = Vec::new();
    let sessions = q["sessions"].as_array().unwrap_or(&empty);
    let labs = q["labs"].as_array().unwrap_or(&empty);
    match what {
        "status" => {
            if json {
                println!("{}", serde_json::to_string_pretty(&q).unwrap_or_default());
                return Ok(());
            }
            let active = sessions.iter().filter(|s| s["status"] == "active").count();
            println!(
                "{url}: {active} active session(s), {} waiting, {} lab(s)",
                sessions.len() - active,
                labs.len()
            );
            for l in labs {
                println!(
                    "  lab {}  {:<16} {:<10} held by {}",
                    l["lab_id"].as_str().unwrap_or("?"),
                    l["name"].as_str().unwrap_or("?"),
                    l["status"].as_str().unwrap_or("?"),
                    l["refcount"]
                );
            }
        }
        "queue" | "sessions" => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(sessions).unwrap_or_default()
                );
                return Ok(());
            }
            println!(
                "{:<4} {:<14} {:<8} {:<12} lab",
                "pos", "session", "status", "owner"
            );
            for s in sessions {
                println!(
                    "{:<4} {:<14} {:<8} {:<12} {}",
                    s["position"],
                    s["handle"].as_str().unwrap_or("?"),
                    s["status"].as_str().unwrap_or("?"),
                    s["owner"].as_str().unwrap_or("?"),
                    s["lab_id"].as_str().unwrap_or("-")
                );
            }
        }
        other => {
            return Err(alpy::Error::Config(format!(
                "unknown lab command {other:?}"
            )))
        }
    }
    Ok(())
}

/// `alpy lab destroy LAB_ID` (an operator's token).
fn destroy(url: &str, token: &str, id: Option<&str>, force: bool) -> alpy::Result<()> {
    let id =
        id.ok_or_else(|| alpy::Error::Config("say which lab: alpy lab destroy LAB_ID".into()))?;
    let what = format!("destroy lab {id} ({url})");
    let r = alpy::lab::http_client(token, std::time::Duration::from_secs(60))?
        .delete(format!("{url}/labs/{id}?force={force}"))
        .send()
        .map_err(unreached(what.clone()))?;
    let status = r.status();
    let v: Value = r.json().unwrap_or_default();
    if !status.is_success() {
        return Err(refused(what, status, &v));
    }
    println!("lab {id} is being destroyed");
    Ok(())
}
