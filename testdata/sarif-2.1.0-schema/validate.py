"""Validate a SARIF 2.1.0 log (path in argv[1]) against sarif-schema-2.1.0.json next to this script, offline."""
import json, os, sys, warnings
import jsonschema

warnings.simplefilter("ignore")
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "sarif-schema-2.1.0.json")) as f:
    schema = json.load(f)
validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
with open(sys.argv[1]) as f:
    doc = json.load(f)
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
for e in errors[:20]:
    print("/".join(map(str, e.path)), ":", e.message)
print("VALID" if not errors else "INVALID %d" % len(errors))
sys.exit(1 if errors else 0)
