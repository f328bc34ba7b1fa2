//! A strict model of the nftables commands the renderings use, to check deltas without a
//! kernel. Stricter than nft where that costs nothing: adding an element whose key
//! exists, deleting or flushing what does not exist, deleting a chain an element still
//! goes to, or an element going to a chain that does not exist, fails the transaction.
//! Only the text forms the renderer writes are understood; anything else is an error.

use std::collections::BTreeMap;

/// Tables by name (all of family `inet`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    tables: BTreeMap<String, Table>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Table {
    /// Map name → (its definition, key → value).
    maps: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// Chain name → (its definition, its rules in order).
    chains: BTreeMap<String, (String, Vec<String>)>,
}

impl Ruleset {
    /// The ruleset after each script applied as one transaction, from an empty one.
    pub fn after(scripts: &[&str]) -> Result<Ruleset, String> {
        let mut ruleset = Ruleset::default();
        for (i, script) in scripts.iter().enumerate() {
            ruleset = ruleset
                .transaction(script)
                .map_err(|e| format!("script {i}: {e}"))?;
        }
        Ok(ruleset)
    }

    /// `script` applied atomically: the new ruleset, or the first error.
    pub fn transaction(&self, script: &str) -> Result<Ruleset, String> {
        let mut next = self.clone();
        let mut lines = script.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let fail = |why: &str| Err(format!("line {}: {why}: {line}", n + 1));
            let words: Vec<&str> = line.splitn(5, ' ').collect();
            let [verb, object, "inet", table, rest @ ..] = &words[..] else {
                return fail("not a command of the renderer");
            };
            let rest = rest.first().copied().unwrap_or("");
            match (*verb, *object) {
                ("add", "table") => {
                    next.tables.entry(table.to_string()).or_default();
                    continue;
                }
                ("delete", "table") => {
                    if next.tables.remove(*table).is_none() {
                        return fail("no such table");
                    }
                    continue;
                }
                _ => {}
            }
            let Some(t) = next.tables.get_mut(*table) else {
                return fail("no such table");
            };
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            match (*verb, *object) {
                ("add", "map") => {
                    t.maps
                        .entry(name.to_owned())
                        .or_insert_with(|| (tail.to_owned(), BTreeMap::new()));
                }
                ("add", "chain") => {
                    t.chains
                        .entry(name.to_owned())
                        .or_insert_with(|| (tail.to_owned(), Vec::new()));
                }
                ("flush", "chain") => match t.chains.get_mut(name) {
                    Some((_, rules)) => rules.clear(),
                    None => return fail("no such chain"),
                },
                ("delete", "chain") => {
                    let target = format!("goto {name}");
                    if t.maps
                        .values()
                        .any(|(_, elements)| elements.values().any(|v| *v == target))
                    {
                        return fail("chain in use");
                    }
                    if t.chains.remove(name).is_none() {
                        return fail("no such chain");
                    }
                }
                ("add", "rule") => match t.chains.get_mut(name) {
                    Some((_, rules)) => rules.push(tail.to_owned()),
                    None => return fail("no such chain"),
                },
                ("add" | "delete", "element") => {
                    if tail != "{" {
                        return fail("expected an element block");
                    }
                    let chains: Vec<String> = t.chains.keys().cloned().collect();
                    let Some((_, elements)) = t.maps.get_mut(name) else {
                        return fail("no such map");
                    };
                    loop {
                        let Some((n, item)) = lines.next() else {
                            return Err(format!("line {}: unclosed block", n + 1));
                        };
                        if item == "}" {
                            break;
                        }
                        let fail = |why: &str| Err(format!("line {}: {why}: {item}", n + 1));
                        let Some(item) = item.strip_prefix('\t').and_then(|i| i.strip_suffix(','))
                        else {
                            return fail("not an element");
                        };
                        if *verb == "add" {
                            let Some((key, value)) = item.split_once(" : ") else {
                                return fail("element without a value");
                            };
                            if let Some(target) = value.strip_prefix("goto ") {
                                if !chains.iter().any(|c| c == target) {
                                    return fail("goto a chain that does not exist");
                                }
                            }
                            if elements.insert(key.to_owned(), value.to_owned()).is_some() {
                                return fail("element exists");
                            }
                        } else {
                            if item.contains(" : ") {
                                return fail("deletion with a value");
                            }
                            if elements.remove(item).is_none() {
                                return fail("no such element");
                            }
                        }
                    }
                }
                _ => return fail("not a command of the renderer"),
            }
        }
        Ok(next)
    }
}
