//! `minuteman vips | members | status`: read the local agent's HTTP API and print tables
//! for people, or the API's JSON with `--json`.

use clap::Args;
use minuteman::agent::views::{MemberView, StateView, VipView};
use serde::de::DeserializeOwned;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// The agent's API.
    #[arg(long, env = "MINUTEMAN_API", default_value = "http://127.0.0.1:61421")]
    pub api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("cannot reach the agent at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("the agent at {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("the agent at {url} sent an answer this CLI does not understand: {source}")]
    Decode {
        url: String,
        source: serde_json::Error,
    },
}

fn fetch<T: DeserializeOwned>(api: &str, path: &str) -> Result<(T, String), ClientError> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let text = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(ClientError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        response.text().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })
    })?;
    let value =
        serde_json::from_str(&text).map_err(|source| ClientError::Decode { url, source })?;
    Ok((value, text))
}

fn report<T>(result: Result<T, ClientError>, print: impl FnOnce(T)) -> ExitCode {
    match result {
        Ok(value) => {
            print(value);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

pub fn vips(args: ClientArgs) -> ExitCode {
    report(
        fetch::<Vec<VipView>>(&args.api, "/v1/vips"),
        |(vips, text)| {
            if args.json {
                println!("{text}");
                return;
            }
            println!(
                "{:<5} {:<28} {:<44} {:<28} BACKENDS",
                "PROTO", "VIP", "DNS NAME", "ADDRESS"
            );
            for vip in vips {
                for service in &vip.services {
                    let backends: Vec<String> = service
                        .backends
                        .iter()
                        .map(|b| {
                            if b.weight == 1 {
                                b.address.to_string()
                            } else {
                                format!("{} (weight {})", b.address, b.weight)
                            }
                        })
                        .collect();
                    println!(
                        "{:<5} {:<28} {:<44} {:<28} {}",
                        vip.protocol,
                        vip.vip,
                        vip.dns.as_deref().unwrap_or("-"),
                        service.address.to_string(),
                        backends.join(", ")
                    );
                }
            }
        },
    )
}

pub fn members(args: ClientArgs) -> ExitCode {
    report(
        fetch::<Vec<MemberView>>(&args.api, "/v1/members"),
        |(members, text)| {
            if args.json {
                println!("{text}");
                return;
            }
            println!(
                "{:<28} {:<15} {:<14} {:<7} {:>9} BACKENDS",
                "MEMBER", "EPOCH", "STATE", "LINKED", "RTT"
            );
            for m in members {
                let rtt = m.rtt_ms.map_or("-".to_owned(), |ms| format!("{ms:.2} ms"));
                let name = if m.is_self {
                    format!("{} (self)", m.address)
                } else {
                    m.address.to_string()
                };
                println!(
                    "{:<28} {:<15} {:<14} {:<7} {:>9} {}",
                    name,
                    m.epoch,
                    m.state,
                    if m.linked { "yes" } else { "no" },
                    rtt,
                    m.backends
                );
            }
        },
    )
}

pub fn status(args: ClientArgs) -> ExitCode {
    report(fetch::<StateView>(&args.api, "/v1/state"), |(s, text)| {
        if args.json {
            println!("{text}");
            return;
        }
        println!(
            "node           {} (epoch {}, record version {})",
            s.address, s.epoch, s.seq
        );
        println!(
            "members        {} known, {} reachable",
            s.members, s.reachable
        );
        println!(
            "view complete  {}",
            if s.view_complete {
                "yes"
            } else {
                "not yet (removals held back)"
            }
        );
        let list = |v: &[std::net::SocketAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("active view    {}", list(&s.active_view));
        println!("passive view   {} peers", s.passive_view.len());
        println!(
            "VIPs           {} ({} kernel services)",
            s.vips, s.kernel_services
        );
        let local: usize = s.local.iter().map(|v| v.backends.len()).sum();
        println!("local backends {local} in {} VIPs", s.local.len());
    })
}

/// `minuteman resolve NAME`: the records the local agent's DNS gives a named VIP
/// (`web.marathon`, or the full `web.marathon.l4lb.thisdcos.directory`) or a task
/// (`web.marathon.mesos`, `_web._tcp.marathon.mesos`).
pub fn resolve(name: &str, args: ClientArgs) -> ExitCode {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        eprintln!("error: {name:?} is not a DNS name");
        return ExitCode::from(2);
    }
    report(
        fetch::<minuteman::agent::api::ResolveView>(&args.api, &format!("/v1/resolve?name={name}")),
        |(view, text)| {
            if args.json {
                println!("{text}");
                return;
            }
            let ips = view.ipv4.iter().map(ToString::to_string);
            for record in ips
                .chain(view.ipv6.iter().map(ToString::to_string))
                .chain(view.srv.iter().map(|srv| format!("SRV {srv}")))
            {
                println!("{}\t{record}", view.name);
            }
        },
    )
}
