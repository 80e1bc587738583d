// The TCP sysctls of each network namespace, quoted in the explanations of
// its connections (tcp_fin_timeout, tcp_syn_retries... are per namespace,
// and pods of one node may set them differently).

package timeline

// maxSysctls bounds the namespaces whose sysctls are kept; those of
// namespaces beyond it go unquoted.
const maxSysctls = 4096

// SetSysctls records the TCP sysctls of namespace s.NetNS, replacing what
// was known of it.
func (c *Correlator) SetSysctls(s Sysctls) {
	if c.sys == nil {
		c.sys = make(map[uint32]*Sysctls)
	}
	if _, ok := c.sys[s.NetNS]; !ok && len(c.sys) >= maxSysctls {
		return
	}
	c.sys[s.NetNS] = &s // a new copy: records already out keep the old one
}

// ForgetSysctls drops the sysctls of a namespace that is gone.
func (c *Correlator) ForgetSysctls(netns uint32) { delete(c.sys, netns) }
