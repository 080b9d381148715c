"""Validate a CycloneDX 1.5 JSON document (path in argv[1]) against the schema files next to this script, offline."""
import json, os, sys, warnings
import jsonschema

warnings.simplefilter("ignore")
here = os.path.dirname(os.path.abspath(__file__))
base = "http://cyclonedx.org/schema/"
store = {}
for name in ["bom-1.5.SNAPSHOT.schema.json", "spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"]:
    with open(os.path.join(here, name)) as f:
        s = json.load(f)
    store[s["$id"]] = s
    store[base + name] = s
schema = store[base + "bom-1.5.SNAPSHOT.schema.json"]
resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
validator = jsonschema.Draft7Validator(schema, resolver=resolver, format_checker=jsonschema.FormatChecker())
with open(sys.argv[1]) as f:
    doc = json.load(f)
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
for e in errors[:20]:
    print("/".join(map(str, e.path)), ":", e.message)
print("VALID" if not errors else "INVALID %d" % len(errors))
sys.exit(1 if errors else 0)
