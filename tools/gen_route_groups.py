"""Generate src/routes/groups.rs: LiteLLM's `LiteLLMRoutes` route groups (newest version).

The data comes from Appendix B of the LiteLLM JWT spec markdown. Every group is emitted as a
fully expanded list: groups the spec gives only "by formula" are computed here from the formulas
hard-coded in FORMULAS below (the spec's composition text is checked against them), and every
group's entry count is checked against the count stated in its heading. Any mismatch, unknown
line or unexpected formula aborts the run with a message and exit status 1.

Run from the repository root:

    python3 tools/gen_route_groups.py [SPEC.md] > src/routes/groups.rs

SPEC.md defaults to ../shared/reference/litellm-jwt-spec.md relative to the repository root.
"""
import argparse
import os
import re
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SPEC = os.path.join(REPO_ROOT, "..", "shared", "reference", "litellm-jwt-spec.md")

APPENDIX_RE = re.compile(r"^## Appendix B\b.*\((\d+(?:\.\d+)+)\)\s*$")
GROUP_RE = re.compile(
    r"^- \*\*`(?P<name>[a-z_][a-z0-9_]*)`\*\* "
    r"\((?P<kind>list|tuple|frozenset|set), (?P<count>\d+) entr(?:y|ies)\)"
    r"(?: — composed as `(?P<comp>[^`]+)`)?\s*$"
)
ENTRIES_RE = re.compile(r"^`[^`]+`(?:, `[^`]+`)*$")
FORMULA_NOTE_RE = re.compile(r"^\(entries = the groups named in the composition, in that order(?P<dedup>; de-duplicated and sorted)?\)$")
WILDCARD_NOTE = "(each `mapped_pass_through_routes` entry with `/*` appended)"
LITERAL_TERM_RE = re.compile(r"^<(?P<n>\d+) literal paths?(?: incl\. (?P<incl>\*[A-Za-z_]+(?:, \*[A-Za-z_]+)*))?>$")
GROUP_TERM_RE = re.compile(r"^(?:list\((?P<a>[a-z_]+)\)|(?P<b>[a-z_]+))$")

# Module-level constants spliced into groups (`*NAME`) that are not LiteLLMRoutes members
# themselves. Only used to cross-check the spec's composition notes, never emitted.
AUX_CONSTANTS = {
    "MODEL_LIST_ROUTES": ["/models", "/v1/models", "/claude_code_gateway/v1/models"],
}


def concat(*names):
    return lambda g: [entry for name in names for entry in g[name]]


# Groups Appendix B gives by formula instead of by expanded entries:
# name -> (the composition text the spec must state, expansion).
FORMULAS = {
    "passthrough_routes_wildcard": (
        "[f'{route}/*' for route in mapped_pass_through_routes]",
        lambda g: [route + "/*" for route in g["mapped_pass_through_routes"]],
    ),
    "mcp_routes": (
        "mcp_inference_routes + mcp_management_routes",
        concat("mcp_inference_routes", "mcp_management_routes"),
    ),
    "agent_routes": (
        "agent_inference_routes + agent_management_routes",
        concat("agent_inference_routes", "agent_management_routes"),
    ),
    "llm_api_routes": (
        "openai_routes + anthropic_routes + google_routes + mapped_pass_through_routes"
        " + passthrough_routes_wildcard + apply_guardrail_routes + mcp_inference_routes"
        " + litellm_native_routes + list(agent_inference_routes) + model_info_routes",
        concat(
            "openai_routes",
            "anthropic_routes",
            "google_routes",
            "mapped_pass_through_routes",
            "passthrough_routes_wildcard",
            "apply_guardrail_routes",
            "mcp_inference_routes",
            "litellm_native_routes",
            "agent_inference_routes",
            "model_info_routes",
        ),
    ),
    "llm_api_routes_without_mcp": (
        "sorted(set(llm_api_routes) - set(mcp_inference_routes))",
        lambda g: sorted(set(g["llm_api_routes"]) - set(g["mcp_inference_routes"])),
    ),
    "org_admin_allowed_routes": (
        "org_admin_only_routes + management_routes + self_managed_routes + admin_viewer_routes",
        concat("org_admin_only_routes", "management_routes", "self_managed_routes", "admin_viewer_routes"),
    ),
}


class SpecError(Exception):
    pass


def parse_appendix_b(text):
    """Return (version, [group dict]) in Appendix B order."""
    lines = text.splitlines()
    start = None
    version = None
    for i, line in enumerate(lines):
        if line.startswith("## Appendix B"):
            m = APPENDIX_RE.match(line)
            if not m:
                raise SpecError(f"line {i + 1}: cannot read the LiteLLM version from {line!r}")
            start, version = i, m.group(1)
            break
    if start is None:
        raise SpecError("no line starting with '## Appendix B'")

    groups = []
    current = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        where = f"line {i + 1}"
        if line.startswith("## ") or line.startswith("# "):
            break  # next section
        if not line.strip() or line.strip() == "---":
            continue
        if line.startswith("- "):
            m = GROUP_RE.match(line)
            if not m:
                raise SpecError(f"{where}: unrecognised group heading {line!r}")
            current = {
                "name": m.group("name"),
                "kind": m.group("kind"),
                "count": int(m.group("count")),
                "comp": m.group("comp"),
                "entries": None,
                "formula_note": None,
                "line": i + 1,
            }
            groups.append(current)
            continue
        if line.startswith("  ") and current is not None:
            body = line.strip()
            if current["entries"] is not None or current["formula_note"] is not None:
                raise SpecError(f"{where}: second body line for group {current['name']!r}")
            if body.startswith("("):
                current["formula_note"] = body
            elif ENTRIES_RE.match(body):
                current["entries"] = re.findall(r"`([^`]+)`", body)
            else:
                raise SpecError(f"{where}: cannot parse the entries of {current['name']!r}: {body[:80]!r}...")
            continue
        if current is None:
            continue  # introductory prose before the first group
        raise SpecError(f"{where}: unexpected line in Appendix B: {line!r}")

    if not groups:
        raise SpecError("Appendix B lists no groups")
    return version, groups


def check_composition(group, known):
    """Cross-check a listed group's entries against its 'composed as' note."""
    comp = group["comp"]
    if comp is None:
        return
    entries = group["entries"]
    name = group["name"]
    pos = 0
    for term in (t.strip() for t in comp.split(" + ")):
        lit = LITERAL_TERM_RE.match(term)
        ref = GROUP_TERM_RE.match(term)
        if lit:
            starred = [s.strip().lstrip("*") for s in lit.group("incl").split(",")] if lit.group("incl") else []
            parts = []
            for s in starred:
                if s in known:
                    parts.append(known[s])
                elif s in AUX_CONSTANTS:
                    parts.append(AUX_CONSTANTS[s])
                else:
                    raise SpecError(f"{name}: composition splices unknown *{s}")
            length = int(lit.group("n")) + sum(len(p) for p in parts)
            chunk = entries[pos : pos + length]
            if len(chunk) != length:
                raise SpecError(f"{name}: composition {comp!r} needs {length} entries at {pos}, only {len(chunk)} listed")
            for s, p in zip(starred, parts):
                if not any(chunk[k : k + len(p)] == p for k in range(len(chunk) - len(p) + 1)):
                    raise SpecError(f"{name}: listed entries do not contain *{s} contiguously")
            pos += length
        elif ref:
            ref_name = ref.group("a") or ref.group("b")
            if ref_name not in known:
                raise SpecError(f"{name}: composition refers to {ref_name!r}, not (yet) defined")
            p = known[ref_name]
            if entries[pos : pos + len(p)] != p:
                raise SpecError(f"{name}: entries {pos}..{pos + len(p)} are not {ref_name}")
            pos += len(p)
        else:
            raise SpecError(f"{name}: cannot read composition term {term!r}")
    if pos != len(entries):
        raise SpecError(f"{name}: composition {comp!r} accounts for {pos} entries, {len(entries)} listed")


def expand(groups):
    """Fill every group's entries (formulas expanded) and check all counts."""
    known = {}
    seen_formulas = set()
    for group in groups:
        name = group["name"]
        if name in known:
            raise SpecError(f"line {group['line']}: group {name!r} listed twice")
        if group["entries"] is None:
            if name not in FORMULAS:
                raise SpecError(f"line {group['line']}: {name!r} has no entries and no formula in this script")
            expected_comp, fn = FORMULAS[name]
            if group["comp"] != expected_comp:
                raise SpecError(
                    f"line {group['line']}: {name!r} formula changed in the spec:\n"
                    f"  spec:   {group['comp']!r}\n  script: {expected_comp!r}"
                )
            note = group["formula_note"]
            if name == "passthrough_routes_wildcard":
                ok = note == WILDCARD_NOTE
            else:
                m = FORMULA_NOTE_RE.match(note or "")
                ok = bool(m) and bool(m.group("dedup")) == expected_comp.startswith("sorted(")
            if not ok:
                raise SpecError(f"line {group['line']}: unexpected formula note for {name!r}: {note!r}")
            try:
                group["entries"] = list(fn(known))
            except KeyError as missing:
                raise SpecError(f"{name}: formula uses {missing} before it is defined") from None
            seen_formulas.add(name)
        else:
            if name in FORMULAS:
                raise SpecError(f"line {group['line']}: {name!r} is listed expanded but the script has a formula for it")
            check_composition(group, known)
        if len(group["entries"]) != group["count"]:
            raise SpecError(
                f"line {group['line']}: {name!r} heading says {group['count']} entries, "
                f"got {len(group['entries'])}"
            )
        if group["kind"] in ("set", "frozenset") and len(set(group["entries"])) != len(group["entries"]):
            raise SpecError(f"line {group['line']}: {group['kind']} {name!r} lists duplicates")
        known[name] = group["entries"]
    missing = set(FORMULAS) - seen_formulas
    if missing:
        raise SpecError(f"formula groups not found in Appendix B: {sorted(missing)}")


def rust_str(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def const_name(group_name):
    return group_name.upper()


def rust_array(prefix, items, suffix=";"):
    """`prefix[items]suffix`, one line if it fits rustfmt's 100 columns, else one item per line."""
    one_line = prefix + "[" + ", ".join(items) + "]" + suffix
    if len(one_line) <= 100 and len(items) > 0:
        return [one_line]
    return [prefix + "["] + [f"    {item}," for item in items] + ["]" + suffix]


def wrap_doc(lead, terms, joiner):
    """Doc-comment lines `/// lead t1 + t2 ...`, wrapped at terms to stay within 100 columns."""
    lines, line = [], "/// " + lead
    for i, term in enumerate(terms):
        piece = term + (joiner if i + 1 < len(terms) else ".")
        if len(line) + 1 + len(piece) > 100 and line != "///":
            lines.append(line)
            line = "///"
        line += " " + piece
    return lines + [line]


TESTS = r'''
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_name_resolves() {
        for name in GROUP_NAMES {
            assert!(members(name).is_some(), "{name} does not resolve");
        }
    }

    #[test]
    fn group_names_are_unique() {
        for (i, a) in GROUP_NAMES.iter().enumerate() {
            assert!(!GROUP_NAMES.iter().skip(i + 1).any(|b| b == a), "{a} twice");
        }
    }

    #[test]
    fn counts_match_spec_headings() {
        for (name, count) in STATED_COUNTS {
            assert_eq!(members(name).map(<[_]>::len), Some(*count), "{name}");
        }
        assert_eq!(STATED_COUNTS.len(), GROUP_NAMES.len());
    }

    #[test]
    fn counts_of_key_groups() {
        assert_eq!(OPENAI_ROUTES.len(), 139);
        assert_eq!(PUBLIC_ROUTES.len(), 19);
        assert_eq!(INFO_ROUTES.len(), 26);
        assert_eq!(MANAGEMENT_ROUTES.len(), 103);
        assert_eq!(LLM_API_ROUTES.len(), 265);
        assert_eq!(LLM_API_ROUTES_WITHOUT_MCP.len(), 250);
        assert_eq!(ADMIN_VIEWER_ROUTES.len(), 100);
        assert_eq!(ORG_ADMIN_ALLOWED_ROUTES.len(), 301);
        assert_eq!(OPENAI_ROUTE_NAMES.len(), 8);
    }

    #[test]
    fn seed_rerank_realtime_bug_is_absent() {
        assert!(OPENAI_ROUTES.contains(&"/v2/rerank"));
        assert!(OPENAI_ROUTES.contains(&"/realtime"));
        assert!(!OPENAI_ROUTES.contains(&"/v2/rerank/realtime"));
    }

    #[test]
    fn formula_groups_are_expanded() {
        assert!(PASSTHROUGH_ROUTES_WILDCARD.contains(&"/bedrock/*"));
        assert_eq!(
            PASSTHROUGH_ROUTES_WILDCARD.len(),
            MAPPED_PASS_THROUGH_ROUTES.len()
        );
        assert_eq!(
            MCP_ROUTES.len(),
            MCP_INFERENCE_ROUTES.len() + MCP_MANAGEMENT_ROUTES.len()
        );
        assert_eq!(AGENT_ROUTES.len(), 12);
        assert!(LLM_API_ROUTES.contains(&"/mcp"));
        assert!(!LLM_API_ROUTES_WITHOUT_MCP.contains(&"/mcp"));
        let sorted = LLM_API_ROUTES_WITHOUT_MCP.iter();
        assert!(sorted.clone().zip(sorted.skip(1)).all(|(a, b)| a < b));
        assert_eq!(
            ORG_ADMIN_ALLOWED_ROUTES.first(),
            Some(&"/organization/info")
        );
    }

    #[test]
    fn openai_route_names_are_names() {
        assert_eq!(OPENAI_ROUTE_NAMES.first(), Some(&"chat_completion"));
        assert!(OPENAI_ROUTE_NAMES.iter().all(|n| !n.starts_with('/')));
    }

    #[test]
    fn unknown_name_is_none() {
        assert_eq!(members("admin_only_routes"), None);
        assert_eq!(members("team_routes"), None);
        assert_eq!(members("OPENAI_ROUTES"), None);
        assert_eq!(members(""), None);
    }
}
'''


def render(version, groups, spec_display):
    out = [
        f"// @generated by tools/gen_route_groups.py from the spec's Appendix B (LiteLLM {version}).",
        f"// Spec: {spec_display}. DO NOT EDIT BY HAND: change the spec or the",
        "// generator and re-run `python3 tools/gen_route_groups.py > src/routes/groups.rs`.",
        "",
        f"//! LiteLLM's `LiteLLMRoutes` route groups, as of LiteLLM {version}.",
        "//!",
        "//! Every group is fully expanded (groups LiteLLM composes from other groups included), in",
        "//! LiteLLM's order, duplicates kept. Members are route templates (`/threads/{thread_id}`,",
        "//! `{name:path}`), except `openai_route_names`, which holds route *names*.",
        "",
        "/// Every LiteLLMRoutes group name, in Appendix B order.",
    ]
    out += rust_array("pub const GROUP_NAMES: &[&str] = &", [rust_str(g["name"]) for g in groups])
    out += [
        "",
        "/// The members of a group, or None if `name` is not a LiteLLMRoutes group.",
        "pub fn members(name: &str) -> Option<&'static [&'static str]> {",
        "    match name {",
    ]
    out += [f"        {rust_str(g['name'])} => Some({const_name(g['name'])})," for g in groups]
    out += ["        _ => None,", "    }", "}"]
    for g in groups:
        out += ["", f"/// `{g['name']}` ({g['kind']}, {len(g['entries'])} entries)."]
        if g["comp"]:
            out += wrap_doc("LiteLLM composes it as", [f"`{t.strip()}`" for t in g["comp"].split(" + ")], " +")
        out += rust_array(f"pub const {const_name(g['name'])}: &[&str] = &", [rust_str(e) for e in g["entries"]])
    out += ["", "/// Entry count stated in each Appendix B heading (checked by the generator and the tests)."]
    out += ["#[cfg(test)]"]
    out += rust_array(
        "const STATED_COUNTS: &[(&str, usize)] = &",
        [f"({rust_str(g['name'])}, {g['count']})" for g in groups],
    )
    return "\n".join(out) + "\n" + TESTS


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help="spec markdown (default: %(default)s)")
    ap.add_argument("-o", "--output", help="write here instead of stdout")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each group's entry count to stderr")
    args = ap.parse_args()
    try:
        with open(args.spec, encoding="utf-8") as f:
            text = f.read()
        version, groups = parse_appendix_b(text)
        expand(groups)
    except (OSError, SpecError) as e:
        print(f"gen_route_groups: error: {e}", file=sys.stderr)
        sys.exit(1)
    rust = render(version, groups, "shared/reference/litellm-jwt-spec.md")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(rust)
    else:
        sys.stdout.write(rust)
    for g in groups if args.verbose else []:
        print(f"{g['name']}: {len(g['entries'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
