# Turns pip's hundreds of lines into a few that say how far it is (Makefile, `make install`).
# Errors reach stderr untouched; this reads only pip's stdout.
/^(Collecting|Processing) / {
    found++
    if (found % 50 == 0) { printf "  found %d packages\n", found; fflush() }
}
/^ *Building (editable|wheel) for .*: started$/ { printf "  building %s\n", $4; fflush() }
/^Installing collected packages:/ {
    n = split(substr($0, index($0, ":") + 2), names, ", ")
    printf "  installing %d packages\n", n; fflush()
}
/^Successfully installed/ { printf "  installed\n"; fflush() }
