#!/usr/bin/env python3
# Checks that every relative link (and #anchor) in README.md and docs/*.md resolves.
import re,os,sys,glob
root=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def slug(h):
    h=h.strip().lower()
    h=re.sub(r'[^\w\- ]','',h)   # drop punctuation (keeps letters, digits, _, -, space)
    return h.replace(' ','-')
def anchors(path):
    out=set(); seen={}
    inblock=False
    for line in open(path):
        if line.startswith('```'): inblock=not inblock; continue
        if inblock: continue
        m=re.match(r'^(#+)\s+(.*)',line)
        if m:
            s=slug(m.group(2)); n=seen.get(s,0); seen[s]=n+1
            out.add(s if n==0 else f'{s}-{n}')
    return out
bad=0; n=0
files=[os.path.join(root,'README.md')]+glob.glob(root+'/docs/*.md')
for f in files:
    text=open(f).read()
    text=re.sub(r'```.*?```','',text,flags=re.S)
    for m in re.finditer(r'\]\(([^)\s]+)\)',text):
        t=m.group(1)
        if re.match(r'^[a-z]+://',t) or t.startswith('mailto:'): continue
        n+=1
        p,_,a=t.partition('#')
        target=os.path.normpath(os.path.join(os.path.dirname(f),p)) if p else f
        if not os.path.exists(target):
            print('MISSING',os.path.relpath(f,root),t); bad+=1; continue
        if a:
            if not target.endswith('.md') or a not in anchors(target):
                print('NO ANCHOR',os.path.relpath(f,root),t); bad+=1
print(f'{n} relative links checked, {bad} broken'); sys.exit(1 if bad else 0)
