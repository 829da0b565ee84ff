package nftables

import "sigs.k8s.io/knftables"

// textTx writes a transaction as nft's text, through knftables: the
// golden files, and the fake table the tests run transactions on.
type textTx struct{ *knftables.Transaction }

// AddTable implements nftWriter.
func (t textTx) AddTable(comment string) { t.Add(&knftables.Table{Comment: &comment}) }

// AddChain implements nftWriter.
func (t textTx) AddChain(c chainDecl) {
	o := &knftables.Chain{Name: c.name}
	if c.base != nil {
		o.Type, o.Hook, o.Priority = &c.base.typ, &c.base.hook, &c.base.prio
	}
	t.Add(o)
}

// FlushChain implements nftWriter.
func (t textTx) FlushChain(name string) { t.Flush(&knftables.Chain{Name: name}) }

// DeleteChain implements nftWriter.
func (t textTx) DeleteChain(name string) { t.Delete(&knftables.Chain{Name: name}) }

// AddSet implements nftWriter.
func (t textTx) AddSet(d setDecl) { t.Add(d.object()) }

// FlushSet implements nftWriter.
func (t textTx) FlushSet(name string, isMap bool) {
	t.Flush(setDecl{name: name, isMap: isMap}.object())
}

// DeleteSet implements nftWriter.
func (t textTx) DeleteSet(name string, isMap bool) {
	t.Delete(setDecl{name: name, isMap: isMap}.object())
}

// Rule implements nftWriter.
func (t textTx) Rule(chain string, r rule) { t.Add(&knftables.Rule{Chain: chain, Rule: r.text}) }

// Element implements nftWriter.
func (t textTx) Element(op, set string, e elem) {
	o := &knftables.Element{Set: set, Key: []string{e.text()}}
	if e.isMap() {
		o = &knftables.Element{Map: set, Key: []string{e.text()}}
		if op == "add" {
			o.Value = []string{e.value()}
		}
	}
	if op == "delete" {
		t.Delete(o)
		return
	}
	t.Add(o)
}
