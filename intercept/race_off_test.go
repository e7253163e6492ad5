//go:build !race

package intercept

// volumeNames is how many distinct names the volume test subscribes to.
const volumeNames = 10000
