import subprocess
import sys


def test_a2v_core_imports_without_ray_and_mlflow():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('ray', 'mlflow'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pkgutil, importlib, a2v_core\n"
        "mods = [m.name for m in pkgutil.iter_modules(a2v_core.__path__)]\n"
        "for m in mods: importlib.import_module('a2v_core.' + m)\n"
        "assert 'ray' not in sys.modules and 'mlflow' not in sys.modules\n"
        "print(len(mods))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 12
