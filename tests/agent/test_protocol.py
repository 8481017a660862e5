"""protocol.py without root: the error table it reads and the request schemas it checks with."""

import errno
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "Forkbox.Agent", "python"))

from forkbox_agent import protocol  # noqa: E402


class ErrorTableWithoutRoot(unittest.TestCase):
    def test_every_errno_name_is_one_this_python_knows(self):
        for name in protocol.ERRORS["errno"]:
            self.assertTrue(hasattr(errno, name), name)

    def test_every_code_the_agent_answers_has_an_http_answer(self):
        codes = protocol.ERRORS["codes"]
        for code in list(protocol.ERRORS["errno"].values()) + [protocol.ERRORS["errno_default"], protocol.ERR_NOT_FOUND,
                                                               protocol.ERR_TOO_LARGE, protocol.ERR_NO_SPACE,
                                                               protocol.ERR_AGENT, protocol.ERR_INTERRUPTED]:
            self.assertIn(code, codes)

    def test_an_oserror_without_errno_is_a_file_error(self):
        self.assertEqual(protocol.errno_code(OSError("plain")), "file_error")
        self.assertEqual(protocol.errno_code(OSError(errno.EDQUOT, "quota")), "no_space")


class RequestSchemasWithoutRoot(unittest.TestCase):
    def test_a_well_formed_request_has_no_problems(self):
        self.assertEqual(protocol.check(protocol.REQUESTS[protocol.OP_EXEC],
                                        {"op": "exec", "id": 1, "lang": "python", "code": "1", "timeout": 30, "rich": False}), [])

    def test_missing_extra_and_mistyped_fields_are_named(self):
        problems = protocol.check(protocol.REQUESTS[protocol.OP_READ], {"op": "read", "id": True, "path": 3, "mx": 1})
        self.assertEqual(sorted(problems), sorted(["request has no 'max'", "request.id is bool, not int",
                                                   "request.path is int, not str",
                                                   "request has 'mx', which the protocol does not name"]))

    def test_nested_lists_are_checked_item_by_item(self):
        req = {"op": "restore", "id": "s", "strategy": "copy", "uid_from": 1, "uid_to": 2, "layers": [{"src": "a"}]}
        self.assertEqual(protocol.check(protocol.ZYGOTE_REQUESTS[protocol.ZYGOTE_RESTORE], req), ["request.layers[0] has no 'dst'"])


if __name__ == "__main__":
    unittest.main()
