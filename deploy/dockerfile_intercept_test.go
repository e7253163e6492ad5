package deploy

import (
	"strings"
)

// The image's state directory for HTTPS interception: docker-compose.yml
// mounts a named volume there, and a new volume takes the image
// directory's mode, so the signer can create its CA whatever uid it runs
// as.
func init() {
	recipeChecks = append(recipeChecks, namedCheck[*recipe]{"interception state directory", func(r *recipe) error {
		var p problems
		if i, _ := r.find(r.stages[0], "RUN", func(a string) bool {
			return strings.Contains(a, "mkdir -p /out/rootfs/var/lib/ocisigner") && strings.Contains(a, "chmod 1777 /out/rootfs/var/lib/ocisigner")
		}); i < 0 {
			p.addf("the build stage does not make /out/rootfs/var/lib/ocisigner with mode 1777")
		}
		if i, _ := r.find(r.final(), "COPY", func(a string) bool {
			from, src, dst, ok := copyFrom(a)
			return ok && from == r.stages[0].name && src == "/out/rootfs/" && dst == "/"
		}); i < 0 {
			p.addf("the final stage does not COPY --from=%s /out/rootfs/ /", r.stages[0].name)
		}
		return p.err()
	}})
	dockerfileMutations = append(dockerfileMutations,
		mutation{"state directory not writable", replaceFirst("chmod 1777 /out/rootfs/var/lib/ocisigner", "chmod 0755 /out/rootfs/var/lib/ocisigner"), "interception state directory"},
		mutation{"state directory not copied", replaceFirst("COPY --from=build /out/rootfs/ /\n", ""), "interception state directory"},
	)
}
