# Sourced by the benchmarks: writes a generated report into docs/benchmarks.md.
#
# update_doc_section DOC MARKER HEADING REPORT: replaces what stands between
# `<!-- MARKER:begin -->` and `<!-- MARKER:end -->` in DOC with the contents of REPORT, or, where
# the markers are missing, appends a `## HEADING` section holding them.
update_doc_section() {
  python3 - "$@" <<'EOF'
import pathlib, sys
doc, marker, heading = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
report = pathlib.Path(sys.argv[4]).read_text()
begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
block = f"{begin}\n{report}{end}"
text = doc.read_text() if doc.exists() else "# Benchmarks\n"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
doc.write_text(text)
EOF
  echo "updated $1" >&2
}
