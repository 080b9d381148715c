"""Check a CycloneDX 1.5 JSON SBOM (argv[1]) the way its consumers read it; prints one JSON summary.

* cyclonedx-python-lib: JsonStrictValidator(1.5) accepts it; it loads into a Bom model whose
  validate() (dependency refs, bom-refs) passes; serialised again as 1.5 it still holds every
  component with its purl and every dependency edge;
* packageurl-python: every purl parses, names the component (type rpm or deb), and prints back
  unchanged;
* license-expression: every licenses[].expression is a valid SPDX expression (strict);
* syft (argv[2], optional): `syft convert` to syft-json and to cyclonedx-json keeps every
  package with its purl.
Exit status 1 with the first problems on stderr when anything fails.
"""
import json, os, subprocess, sys, tempfile, warnings

warnings.simplefilter("ignore")
from cyclonedx.model.bom import Bom
from cyclonedx.output.json import JsonV1Dot5
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from license_expression import get_spdx_licensing
from packageurl import PackageURL

path = sys.argv[1]
syft = sys.argv[2] if len(sys.argv) > 2 else None
text = open(path).read()
doc = json.loads(text)
problems = []

err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
if err is not None:
    problems.append("JsonStrictValidator: %s" % err)

libs = [c for c in doc.get("components", []) if c.get("type") == "library"]
want = sorted((c["name"], c.get("version"), c["purl"]) for c in libs)
edges = sorted((d["ref"], x) for d in doc.get("dependencies", []) for x in d.get("dependsOn", []))

bom = Bom.from_json(doc)
try:
    bom.validate()
except Exception as e:  # noqa: BLE001 - the library raises several kinds
    problems.append("Bom.validate: %r" % e)
again = json.loads(JsonV1Dot5(bom).output_as_string())
got = sorted(
    (c["name"], c.get("version"), c["purl"])
    for c in again.get("components", [])
    if c.get("type") == "library"
)
if got != want:
    problems.append("round trip through the Bom model changed the packages: %d -> %d" % (len(want), len(got)))
got_edges = sorted((d["ref"], x) for d in again.get("dependencies", []) for x in d.get("dependsOn", []))
if got_edges != edges:
    problems.append("round trip changed the dependency edges: %d -> %d" % (len(edges), len(got_edges)))

for c in libs:
    p = c["purl"]
    try:
        u = PackageURL.from_string(p)
    except ValueError as e:
        problems.append("purl %s: %s" % (p, e))
        continue
    if u.type not in ("rpm", "deb") or u.name != c["name"]:
        problems.append("purl %s: type %s name %s (component %s)" % (p, u.type, u.name, c["name"]))
    if u.to_string() != p:
        problems.append("purl %s prints back as %s" % (p, u.to_string()))

licensing = get_spdx_licensing()
expressions = names = 0
for c in doc.get("components", []):
    for l in c.get("licenses", []):
        if "expression" in l:
            expressions += 1
            info = licensing.validate(l["expression"], strict=True)
            if info.errors or info.invalid_symbols:
                problems.append("%s: expression %r: %s" % (c["name"], l["expression"], info.errors))
        elif "name" in l.get("license", {}):
            names += 1
        else:
            problems.append("%s: license without expression or name: %r" % (c["name"], l))

syft_counts = {}
if syft:
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    with tempfile.TemporaryDirectory() as d:
        for fmt in ("syft-json", "cyclonedx-json"):
            out = os.path.join(d, fmt + ".json")
            r = subprocess.run([syft, "convert", path, "-o", "%s=%s" % (fmt, out)], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                problems.append("syft convert -o %s: %s" % (fmt, r.stderr[-2000:]))
                continue
            o = json.load(open(out))
            items = o["artifacts"] if fmt == "syft-json" else [c for c in o.get("components", []) if c.get("purl")]
            purls = sorted(x.get("purl") for x in items)
            if purls != sorted(p for _, _, p in want):
                problems.append("syft convert -o %s: %d packages with purls, %d expected" % (fmt, len(purls), len(want)))
            syft_counts[fmt] = len(purls)
            if fmt == "syft-json":
                syft_counts["relationships"] = sum(1 for r in o.get("artifactRelationships", []) if r.get("type") == "dependency-of")

print(json.dumps({"packages": len(want), "edges": len(edges), "expressions": expressions, "names": names, "syft": syft_counts}))
for p in problems[:30]:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
