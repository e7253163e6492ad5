module github.com/ocisigner/ocisigner

go 1.26
