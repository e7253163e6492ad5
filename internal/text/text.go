// Package text holds the small string helpers the packages share: how far
// apart two names are (for "did you mean"), and how to shorten a string
// without cutting a character in half.
package text

import (
	"strconv"
	"unicode/utf8"
)

// Distance is the Levenshtein distance of two short strings, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Cut shortens s to at most n bytes, at a character boundary, and appends
// "…"; s is returned as it is when it is short enough.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:boundary(s, n)] + "…"
}

// CutCounted is Cut, saying how long s was: "…[100000 bytes]". For values a
// client chose, which may be of any size.
func CutCounted(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:boundary(s, n)] + "…[" + strconv.Itoa(len(s)) + " bytes]"
}

// boundary is the largest index ≤ n at which a character starts.
func boundary(s string, n int) int {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}
