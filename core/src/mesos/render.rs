//! A stable, readable text rendering of extracted VIPs: one row per (VIP, backend), then the
//! warnings. Used by `minuteman mesos inspect` and by snapshot tests.
//!
//! Invariants:
//! - Deterministic: rows follow the [`VipSet`] order (protocol, address or name, port; then
//!   backends in order), columns are padded to the widest cell, no trailing spaces.
//! - IPv6 addresses are bracketed wherever a port follows them (`[fd01:d::1]:80`).

use super::extract::Extracted;
use crate::vip::{Vip, VipAddr, VipSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// `ip:port`, with IPv6 in brackets.
pub fn socket(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// A VIP's address or name with its port: `1.2.3.4:5000`, `[fd01:d::1]:80`,
/// `merp.marathon:5000`.
pub fn vip_address(vip: &Vip) -> String {
    match &vip.addr {
        VipAddr::Ip(ip) => socket(*ip, vip.port),
        VipAddr::Named(name) => format!("{name}:{}", vip.port),
    }
}

fn table(rows: &[[String; 5]]) -> String {
    let mut widths = [0usize; 5];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The VIP table alone.
pub fn vips_text(vips: &VipSet) -> String {
    if vips.is_empty() {
        return "no VIPs\n".to_string();
    }
    let mut rows = vec![[
        "PROTO".to_string(),
        "VIP".to_string(),
        "BACKEND".to_string(),
        "AGENT".to_string(),
        "WEIGHT".to_string(),
    ]];
    for (vip, backends) in &vips.vips {
        for backend in backends {
            rows.push([
                vip.protocol.to_string(),
                vip_address(vip),
                socket(backend.ip, backend.port),
                backend.agent.to_string(),
                backend.weight.to_string(),
            ]);
        }
    }
    let mut out = table(&rows);
    let _ = writeln!(
        out,
        "{} VIP{}, {} backend{}",
        vips.vips.len(),
        if vips.vips.len() == 1 { "" } else { "s" },
        vips.backend_count(),
        if vips.backend_count() == 1 { "" } else { "s" },
    );
    out
}

/// The VIP table followed by the warnings.
pub fn text(extracted: &Extracted) -> String {
    let mut out = vips_text(&extracted.vips);
    if !extracted.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for warning in &extracted.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}
